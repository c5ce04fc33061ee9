"""Repairs of spaCy parses that read a verb as a noun, made before a graph is read from them.

The small English model tags "points" in "a small red circle points at a square" as a plural
noun with "circle" as its compound modifier: one entity "small red circle points" and no
verb. An indefinite article cannot introduce a plural noun, nor does a noun take a subject
without a copula, so such a plural root noun followed by a preposition is the verb, and the
sentence is re-read with it as one. ("a man with car keys at a door" keeps its reading:
"keys" is no root and takes no "a".) The same model sometimes reads "a large blue diamond
points at a small purple cross" as "points" the subject of a root noun "cross" (a sentence
without a verb): "points" is the verb there too, and "cross" its preposition's object.
"""

from __future__ import annotations

from spacy.tokens import Doc

#: Indefinite articles: they never introduce a plural noun.
INDEFINITE = ("a", "an")


def verb_read_as_noun(doc: Doc) -> tuple[int, int | None] | None:
    """``(verb, object)`` where a plural noun is the sentence's verb, or None: a root noun with
    a preposition after it and either a nominal subject of its own ("a star points at": a noun
    takes no subject without a copula) or an indefinite article and, just before it, the
    noun it was read to modify ("a red circle points at", "a white square points at"). Or the
    same noun read as the subject of a root noun after its preposition, in a sentence without
    a verb ("a blue diamond points at a small purple cross" read as "...points [at a small
    purple] cross"): the verb is the plural noun, and ``object`` that root, its preposition's
    object."""
    for token in doc:
        if token.tag_ != "NNS" or not token.lower_.endswith("s"):
            continue
        children = list(token.children)
        prepositions = _prepositions_after(token)
        if not prepositions:
            continue
        if token.dep_ == "ROOT":
            if any(c.dep_ == "nsubj" for c in children) and not any(c.dep_ in ("cop", "aux") for c in children):
                return token.i, None
            if _modified_after_article(token):
                return token.i, None
        elif _subject_of_a_root_noun(token, prepositions[0]) and _modified_after_article(token):
            return token.i, token.head.i
    return None


def _prepositions_after(token) -> list:
    """The prepositions that hang on ``token`` and follow it ("at" in "points at")."""
    return [c for c in token.children if c.dep_ == "prep" and c.i > token.i]


def _modified_after_article(token) -> bool:
    """An indefinite article on ``token`` and, just before it, a word read to modify it."""
    before = token.doc[token.i - 1] if token.i > 0 else None
    article = any(c.dep_ == "det" and c.lower_ in INDEFINITE for c in token.children)
    return article and before is not None and before.head.i == token.i and before.dep_ in ("compound", "amod")


def _subject_of_a_root_noun(token, preposition) -> bool:
    """``token`` is the subject of a root noun after ``preposition``, in a sentence without a verb."""
    root = token.head
    return (
        token.dep_ == "nsubj"
        and root.dep_ == "ROOT"
        and root.tag_ in ("NN", "NNS")
        and root.i > preposition.i
        and not any(t.pos_ in ("VERB", "AUX") for t in token.doc)
    )


def repaired(doc: Doc) -> Doc:
    """``doc``, or where a verb was read as a noun (:func:`verb_read_as_noun`), the same words
    re-parsed by hand: the verb becomes one; where it had no subject, the word before it
    becomes the subject noun with the article and adjectives before it; where it was read as
    a root noun's subject, that noun becomes its preposition's object with the words between."""
    found = verb_read_as_noun(doc)
    if found is None:
        return doc
    verb, root = found
    heads = [t.head.i for t in doc]
    deps = [t.dep_ for t in doc]
    pos, tags = [t.pos_ for t in doc], [t.tag_ for t in doc]
    lemmas = [t.lemma_ for t in doc]
    if root is not None:
        preposition = _prepositions_after(doc[verb])[0].i
        heads[verb], deps[verb] = verb, "ROOT"
        heads[root], deps[root] = preposition, "pobj"
        for i in range(preposition + 1, root):  # "a small purple" in "at a small purple cross"
            heads[i], deps[i] = root, "det" if tags[i] == "DT" else "amod"
    if not any(c.dep_ == "nsubj" for c in doc[verb].children):
        noun = verb - 1
        for child in doc[verb].children:
            if child.i < noun:  # the article and adjectives before the noun are the noun's
                heads[child.i] = noun
        heads[noun], deps[noun], pos[noun], tags[noun] = verb, "nsubj", "NOUN", "NN"
    pos[verb], tags[verb], lemmas[verb] = "VERB", "VBZ", doc[verb].lemma_  # the noun's lemma: "points" -> "point"
    return Doc(
        doc.vocab,
        words=[t.text for t in doc],
        spaces=[bool(t.whitespace_) for t in doc],
        heads=heads,
        deps=deps,
        pos=pos,
        tags=tags,
        lemmas=lemmas,
    )
