"""How well a parse agrees with a gold (subject, verb, object) triplet, as ComVG labels them.

Gold verbs are lemmatised and written without spaces ("nextto", "leaningagainst"), and some
are inflected ("holding", "milking"); ``layingin`` stands for lie/lay in. Words are compared
after a light stemming so that "sit on" agrees with ``sit`` and "teddy bears" with ``teddybears``.
"""

from __future__ import annotations

from dataclasses import dataclass

from comclip.parsing.base import SceneGraph

#: Gold verbs that stand for a set of predicates.
GOLD_ALIASES = {"layingin": {"lie", "lay", "laying", "lying"}}


def stem(word: str) -> str:
    """A crude stem for comparing words: drops -ing/-es/-s/-ed and doubled final consonants."""
    word = word.lower().replace(" ", "")
    for suffix in ("ing", "es", "ed", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    if len(word) >= 3 and word[-1] == word[-2] and word[-1] not in "aeiou":
        word = word[:-1]
    return word.rstrip("e")


def entity_agrees(gold: str, head: str, phrase: str) -> bool:
    """The gold noun names the entity by its head or its whole (compound) phrase."""
    gold = stem(gold)
    return gold in {stem(head), stem(phrase), stem(phrase.split()[-1])} or stem(phrase).endswith(gold)


def predicate_agrees(gold: str, predicate: str) -> bool:
    """Spaces removed or by the verb's lemma; ``layingin`` means lie/lay with any preposition."""
    words = predicate.lower().split()
    if not words:
        return False
    if gold in GOLD_ALIASES:
        return words[0] in GOLD_ALIASES[gold]
    joined = "".join(words)
    if gold == joined or stem(gold) in {stem(words[0]), stem(joined)}:
        return True
    # An inflected verb written together with its prepositions: "leaningagainst" for "lean against".
    rest = "".join(words[1:])
    return len(words) > 1 and gold.endswith(rest) and stem(gold[: len(gold) - len(rest)]) == stem(words[0])


@dataclass
class TripletAgreement:
    subject: bool
    predicate: bool
    object: bool


def first_relation_agreement(graph: SceneGraph, gold: tuple[str, str, str]) -> TripletAgreement:
    """Agreement of the graph's first relation with ``gold``; all False when there is none."""
    if not graph.relations:
        return TripletAgreement(False, False, False)
    relation = graph.relations[0]
    subject, obj = graph.entity(relation.subject), graph.entity(relation.object)
    return TripletAgreement(
        entity_agrees(gold[0], subject.head, subject.phrase),
        predicate_agrees(gold[1], relation.predicate),
        entity_agrees(gold[2], obj.head, obj.phrase),
    )
