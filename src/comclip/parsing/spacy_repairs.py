"""Repairs of spaCy parses that read a verb as a noun, made before a graph is read from them.

The small English model tags "points" in "a small red circle points at a square" as a plural
noun with "circle" as its compound modifier: one entity "small red circle points" and no
verb. An indefinite article cannot introduce a plural noun, nor does a noun take a subject
without a copula, so such a plural root noun followed by a preposition is the verb, and the
sentence is re-read with it as one. ("a man with car keys at a door" keeps its reading:
"keys" is no root and takes no "a".)
"""

from __future__ import annotations

from spacy.tokens import Doc

#: Indefinite articles: they never introduce a plural noun.
INDEFINITE = ("a", "an")


def verb_read_as_noun(doc: Doc) -> int | None:
    """The index of a plural root noun that is the sentence's verb, or None: one with a
    preposition after it and either a nominal subject of its own ("a star points at": a noun
    takes no subject without a copula) or an indefinite article and, just before it, the
    noun it was read to modify ("a red circle points at", "a white square points at")."""
    for token in doc:
        children = list(token.children)
        if not (
            token.dep_ == "ROOT"
            and token.tag_ == "NNS"
            and token.lower_.endswith("s")
            and any(c.dep_ == "prep" and c.i > token.i for c in children)
        ):
            continue
        if any(c.dep_ == "nsubj" for c in children) and not any(c.dep_ in ("cop", "aux") for c in children):
            return token.i
        before = doc[token.i - 1] if token.i > 0 else None
        article = any(c.dep_ == "det" and c.lower_ in INDEFINITE for c in children)
        if article and before is not None and before.head.i == token.i and before.dep_ in ("compound", "amod"):
            return token.i
    return None


def repaired(doc: Doc) -> Doc:
    """``doc``, or where a verb was read as a noun (:func:`verb_read_as_noun`), the same words
    re-parsed by hand: the verb becomes one, and where it had no subject, the word before it
    becomes the subject noun with the article and adjectives before it."""
    verb = verb_read_as_noun(doc)
    if verb is None:
        return doc
    heads = [t.head.i for t in doc]
    deps = [t.dep_ for t in doc]
    pos, tags = [t.pos_ for t in doc], [t.tag_ for t in doc]
    lemmas = [t.lemma_ for t in doc]
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
