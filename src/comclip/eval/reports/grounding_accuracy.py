"""Grounding accuracy on data whose true boxes are known (the sandbox's generator).

The share of objects whose box for its label (the head noun: the query the pipeline issues for
that entity) has IoU >= 0.5 with the object's true box (:func:`covers`: its whole shape's, or
the box of its pixels that show where it is partly hidden), with an interval; the oracle
grounder, built from the whole shapes' boxes, is the upper bound. Each image's labels are grounded as the
pipeline grounds a caption naming them all: with ``joint`` assignment together (each to a
different region), else each by its top box.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeGuard

from comclip.boxes import Box
from comclip.digests import image_digest
from comclip.eval.benchmarks import metrics
from comclip.eval.benchmarks.datasets import Dataset
from comclip.eval.runs.options import EVAL
from comclip.grounding import Grounder, create_grounder
from comclip.grounding.assignment import assign
from comclip.pipeline.memory import Stored

IOU_THRESHOLD = 0.5


def has_boxes(dataset: object) -> TypeGuard[Dataset]:
    """Whether any example of ``dataset`` carries the true boxes of its images."""
    return any(getattr(ex, "boxes", ()) for ex in getattr(dataset, "examples", ()))


def covers(found: Box, whole: Box, shown: Box | None = None) -> bool:
    """Whether ``found`` boxes the object: IoU >= 0.5 with its whole shape's box, or with the
    box of its pixels that show (``shown``). An object partly hidden behind another is boxed
    right either way: COCO boxes what is seen of it, amodal annotations its whole extent."""
    return bool(found.iou(whole) >= IOU_THRESHOLD or (shown is not None and found.iou(shown) >= IOU_THRESHOLD))


def shown_boxes(example) -> tuple:
    """Per image of ``example``, the shown box of each of its true objects (None where the
    example does not know them)."""
    return example.shown or tuple((None,) * len(objects) for objects in example.boxes)


def known_boxes(dataset: Dataset) -> list:
    """``(image, [(label, box), ...], shown)`` for every image whose true boxes the dataset
    knows (``shown``: what shows of each object, see :func:`shown_boxes`)."""
    return [
        (image, objects, shown) for ex in dataset.examples for image, objects, shown in zip(ex.images, ex.boxes, shown_boxes(ex))
    ]


def oracle_grounder(dataset: Dataset) -> Grounder:
    """The grounder that returns the dataset's true boxes."""
    return create_grounder("oracle", None, known=known_boxes(dataset))


def grounding_hits(grounder: Grounder, dataset: Dataset, joint: bool = False) -> list[bool]:
    """Per known object of every image: does its label's box cover it (:func:`covers`)?
    Rankings the pipeline stored in its backbone's cache are read back, not computed again."""
    stored = Stored(getattr(grounder, "backbone", None), grounder, None)
    hits = []
    for ex in dataset.examples:
        for image, objects, seen in zip(ex.images, ex.boxes, shown_boxes(ex)):
            labels = [label for label, _ in objects]
            grounded = assign(_rankings(grounder, stored, image, labels), labels, joint=joint)
            for (_, truth), visible, found in zip(objects, seen, grounded):
                top = found.detection.boxes if found.detection is not None else ()
                hits.append(any(covers(b, truth, visible) for b in top))
    return hits


def _rankings(grounder: Grounder, stored: Stored, image, labels: list[str]) -> list:
    key = image_digest(image)
    ranked = stored.rankings(key, list(dict.fromkeys(labels)))
    missing = [label for label in dict.fromkeys(labels) if label not in ranked]
    if missing:
        ranked.update(stored.ground(grounder, image, key, missing))
    return [ranked[label] for label in labels]


def object_subsets(dataset: Dataset) -> list[str]:
    """The subset of each known object, in :func:`grounding_hits`' order."""
    return [ex.subset for ex in dataset.examples for objects in ex.boxes for _ in objects]


def grounding_report(
    grounders: Mapping[str, Grounder | tuple[Grounder, bool]],
    dataset: Dataset,
    seed: int = EVAL.bootstrap_seed,
    n_bootstrap: int = EVAL.n_bootstrap,
) -> dict:
    """``{name: {"value": %, "ci95": [lo, hi], "n": objects}}``, with ``"subsets"`` of the same
    per subset where there are several (the sandbox's tasks: crowded scenes apart); a grounder
    may be given as ``(grounder, joint)`` to ground each image's labels jointly."""
    subsets = object_subsets(dataset)
    out = {}
    for name, entry in grounders.items():
        grounder, joint = entry if isinstance(entry, tuple) else (entry, False)
        out[name] = shares(grounding_hits(grounder, dataset, joint), subsets, n_bootstrap, seed)
    return out


def shares(hits: list[bool], subsets: list[str], n_bootstrap: int, seed: int) -> dict:
    """``{"value", "ci95", ..., "n"}`` of ``hits``, with ``"subsets"``: the same per subset
    (``subsets[i]`` is hit i's) where there are several."""
    found = {**metrics.summarise(hits, n_bootstrap, seed), "n": len(hits)}
    names = sorted(set(subsets))
    if len(names) > 1:
        found["subsets"] = {
            name: shares([h for h, s in zip(hits, subsets) if s == name], [], n_bootstrap, seed) for name in names
        }
    return found
