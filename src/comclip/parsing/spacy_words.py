"""The word lists the spaCy parser's rules read: dependency labels by role, the nouns that
act as prepositions ("on top of"), the heads never taken as entities, and the descriptive
words that qualify a following noun. Kept apart from the rules so they read as data."""

from __future__ import annotations

SUBJECT_DEPS = {"nsubj", "nsubjpass", "csubj"}
OBJECT_DEPS = {"dobj", "obj", "attr", "oprd", "dative"}
MODIFIER_DEPS = {"amod", "compound", "nummod", "nmod", "npadvmod", "quantmod"}
PREDICATE_COMPLEMENT_DEPS = {"acomp", "attr", "xcomp", "advcl", "ccomp", "oprd"}
CLAUSE_ON_NOUN_DEPS = {"acl", "relcl"}
NOUN_POS = {"NOUN", "PROPN", "NUM"}
#: Where a noun phrase's head stands.
NOMINAL_DEPS = {"ROOT", "nsubj", "nsubjpass", "dobj", "obj", "pobj", "conj", "attr", "appos"}
#: Nouns that are part of a complex preposition ("in front of", "on top of", "to the left of").
PREPOSITION_NOUNS = {"front", "top", "side", "middle", "back", "bottom", "left", "right"}
SKIP_HEADS = {"it", "there", "this", "that", "which", "who", "what", "something", "one"}
#: "a circle to its left" (of the entity it belongs to): the side noun -> the relation's words.
POSSESSIVE_SIDES = {"left": "to the left of", "right": "to the right of", "front": "in front of", "back": "behind"}
#: "a square with a circle above it": pronouns that stand for the owning entity.
OWNER_PRONOUNS = {"it", "them"}
#: Words that describe (colours, sizes, materials) and that the tagger reads as nouns before a
#: noun ("a large purple cross": "purple" the subject, "cross" a verb): before another noun
#: they are that noun's attributes.
DESCRIPTIVE_WORDS = frozenset(
    [
        "red",
        "orange",
        "yellow",
        "green",
        "blue",
        "purple",
        "pink",
        "brown",
        "black",
        "white",
        "gray",
        "grey",
        "silver",
        "gold",
        "golden",
        "violet",
        "beige",
        "tan",
        "turquoise",
        "cyan",
        "magenta",
        "maroon",
        "navy",
        "small",
        "large",
        "big",
        "little",
        "tiny",
        "huge",
        "giant",
        "wooden",
        "metal",
        "plastic",
        "glass",
        "stone",
    ]
)
