"""Results the persistent cache keeps besides embeddings, so a warm run repeats no work: the
rankings of a grounder whose output depends only on the image, the query and its
configuration (the clip grounder): every candidate, best first, so any way of picking from
them (argmax, a union margin, the joint assignment of a caption's entities) reads them; and the
scene graphs of a parser whose output depends only on the caption and its model (spaCy, an
LLM).

Keys name what made the result: the backbone's fingerprint and the grounder's description for
rankings; the parser's description (its model and version) for parses. Grounders and parsers that read data of their own (a regions file, a dataset's graphs) are never cached.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Sequence
from typing import overload

import numpy as np

from comclip.boxes import Box, MaskedBox, stored_box
from comclip.digests import description_digest
from comclip.grounding import Detection
from comclip.parsing import SceneGraph


def _digest(description: dict) -> str:
    return description_digest(description, 10)


#: The prefix of a ranking record packed as numbers (see :func:`detections_record`), and of
#: one whose boxes include masked boxes (their runs follow the boxes).
PACKED = "f8:"
PACKED_RUNS = "f8r:"


def detections_record(detections: Sequence[Detection]) -> str:
    """Ranked detections as a text record: ``f8:`` and the base64 of little-endian float64s,
    ``[n, scores (n), box counts (n), boxes (4 per box: x1, y1, x2, y2)]``; where a box is a
    :class:`~comclip.boxes.MaskedBox`, ``f8r:`` and then also ``[runs per box, runs (4 per
    run)]``. Exact (every float a Python float), and read back without parsing a number at a
    time: a warm run reads tens of thousands of rankings of 78 candidates (as JSON, parsing
    them was most of its time)."""
    counts = [len(d.boxes) for d in detections]
    boxes = [b for d in detections for b in d.boxes]
    values = [len(detections), *(d.score for d in detections), *counts, *(c for b in boxes for c in b.as_tuple())]
    prefix = PACKED
    if any(isinstance(b, MaskedBox) for b in boxes):
        runs = [getattr(b, "runs", ()) for b in boxes]
        values += [*(len(r) for r in runs), *(c for some in runs for run in some for c in run.as_tuple())]
        prefix = PACKED_RUNS
    return prefix + base64.b64encode(np.array(values, dtype="<f8").tobytes()).decode("ascii")


def read_detections(record: str) -> StoredRanking:
    """The ranking a :func:`detections_record` holds (or a JSON record ``[[score, [[x1, y1, x2,
    y2], ...]], ...]``, as caches written before kept them)."""
    if not record.startswith((PACKED, PACKED_RUNS)):
        rows = json.loads(record)
        return StoredRanking([s for s, _ in rows], [len(b) for _, b in rows], [x for _, b in rows for x in b])
    prefix = PACKED_RUNS if record.startswith(PACKED_RUNS) else PACKED
    values = np.frombuffer(base64.b64decode(record[len(prefix) :]), dtype="<f8")
    n = int(values[0]) if len(values) else 0
    counts = values[1 + n : 1 + 2 * n].astype(int).tolist()
    end = 1 + 2 * n + 4 * sum(counts)
    boxes = values[1 + 2 * n : end].reshape(-1, 4)
    runs = None
    if prefix == PACKED_RUNS:
        per_box = values[end : end + len(boxes)].astype(int).tolist()
        runs = (per_box, values[end + len(boxes) :].reshape(-1, 4))
    return StoredRanking(values[1 : 1 + n].tolist(), counts, boxes, runs)


class StoredRanking(Sequence[Detection]):
    """Ranked detections read back from a record, each made the first time it is asked for:
    a warm run's argmax reads the first two of a ranking (the pick and its margin), not every
    candidate (a grid has 78, and a run reads thousands of rankings). Equal to any sequence of
    the same detections."""

    __slots__ = ("_scores", "_starts", "_boxes", "_made", "_runs", "_run_starts")

    def __init__(
        self,
        scores: list[float],
        counts: list[int],
        boxes: Sequence | np.ndarray,
        runs: tuple[list[int], np.ndarray] | None = None,
    ) -> None:
        self._scores, self._boxes = scores, boxes
        self._runs = runs  # (runs per box, the runs) where boxes are masked
        self._run_starts = list(itertools.accumulate(runs[0], initial=0)) if runs else []
        self._starts = list(itertools.accumulate(counts, initial=0))
        self._made: list[Detection | None] = [None] * len(scores)

    def __len__(self) -> int:
        return len(self._scores)

    @overload
    def __getitem__(self, index: int) -> Detection: ...
    @overload
    def __getitem__(self, index: slice) -> list[Detection]: ...
    def __getitem__(self, index: int | slice) -> Detection | list[Detection]:
        if isinstance(index, slice):
            return [self[k] for k in range(*index.indices(len(self)))]
        k = range(len(self))[index]  # a negative index counted from the end, as a list's
        made = self._made[k]
        if made is None:
            first, last = self._starts[k], self._starts[k + 1]
            boxes = tuple(self._box(n) for n in range(first, last))
            made = self._made[k] = Detection(boxes=boxes, score=self._scores[k])
        return made

    def _box(self, n: int) -> Box:
        """Box ``n`` of the record (a masked box where it has runs)."""
        runs = self._runs[1][self._run_starts[n] : self._run_starts[n + 1]] if self._runs is not None else ()
        return stored_box(self._boxes[n], runs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"StoredRanking({list(self)!r})"


class Stored:
    """The grounders' rankings and the parses of one pipeline, read from and written to the
    cache in front of its backbone (a :class:`~comclip.backbones.cached.CachedEncoder`) as
    records of their own, beside the embeddings: JSON text, never vectors."""

    def __init__(self, backbone, grounder, parser):
        self.cache = getattr(backbone, "cache", None)
        self._ground = (
            backbone.cache_key("ranking", _digest(grounder.describe()))
            if self.cache is not None and getattr(grounder, "cacheable", False)
            else None
        )
        self._parse = (
            f"parse|{_digest(parser.describe())}" if self.cache is not None and getattr(parser, "cacheable", False) else None
        )

    def rankings(self, digest: str, names: list[str]) -> dict[str, Sequence[Detection]]:
        """The stored ranking of each of ``names`` on the image (those found), best first; an
        empty list: nothing found."""
        if self._ground is None:
            return {}
        keys = {name: self._ground_key(digest, name) for name in names}
        found = self.cache.get_records(list(keys.values()))
        return {name: read_detections(found[key]) for name, key in keys.items() if key in found}

    def ground(self, grounder, image, digest: str, names: list[str], source: str | None = None) -> dict[str, list[Detection]]:
        """``grounder``'s rankings of ``names`` on the image, computed now and kept."""
        fresh = dict(zip(names, grounder.ground(image, names, source=source)))
        self.keep_rankings(digest, fresh)
        return fresh

    def ground_many(self, grounder, images: list, names: list[list[str]]) -> list[dict[str, list[Detection]]]:
        """:meth:`ground` of many loaded images (each with its own ``names``) in one
        :meth:`~comclip.grounding.base.Grounder.ground_many` call."""
        found = grounder.ground_many([im.image for im in images], names, [im.source for im in images])
        fresh = [dict(zip(some, ranked)) for some, ranked in zip(names, found)]
        for image, ranked in zip(images, fresh):
            self.keep_rankings(image.digest, ranked)
        return fresh

    def keep_rankings(self, digest: str, ranked: dict[str, list[Detection]]) -> None:
        if self._ground is not None and ranked:
            self.cache.put_records((self._ground_key(digest, name), detections_record(d)) for name, d in ranked.items())

    def _ground_key(self, digest: str, name: str) -> str:
        return f"{self._ground}|{digest}|{name}"

    def parse(self, parser, texts: list[str]) -> dict[str, SceneGraph]:
        """Each caption's scene graph: stored ones read back, the rest parsed (in one batch) and stored."""
        if self._parse is None:
            return dict(zip(texts, parser.parse_many(texts)))
        keys = {text: f"{self._parse}|{text}" for text in texts}
        found = self.cache.get_records(list(keys.values()))
        graphs = {text: SceneGraph.from_dict(json.loads(found[key]), text=text) for text, key in keys.items() if key in found}
        missing = [text for text in texts if text not in graphs]
        if missing:
            fresh = dict(zip(missing, parser.parse_many(missing)))
            self.cache.put_records((keys[text], json.dumps(graph.to_dict())) for text, graph in fresh.items())
            graphs.update(fresh)
        return {text: graphs[text] for text in texts}
