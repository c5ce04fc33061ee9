"""Grounding accuracy on data whose true boxes are known (the sandbox's generator).

The share of objects whose top-ranked box for its label (the head noun: the query the
pipeline issues for that entity) has IoU >= 0.5 with the object's true box, with a bootstrap
interval; the oracle grounder, built from the same boxes, is the upper bound.
"""

from __future__ import annotations

from ..grounding import Grounder, create_grounder
from . import metrics
from .datasets import Dataset

IOU_THRESHOLD = 0.5


def has_boxes(dataset) -> bool:
    """Whether any example of ``dataset`` carries the true boxes of its images."""
    return any(getattr(ex, "boxes", ()) for ex in getattr(dataset, "examples", ()))


def known_boxes(dataset: Dataset) -> list:
    """``(image, [(label, box), ...])`` for every image whose true boxes the dataset knows."""
    return [(image, objects) for ex in dataset.examples for image, objects in zip(ex.images, ex.boxes)]


def oracle_grounder(dataset: Dataset) -> Grounder:
    """The grounder that returns the dataset's true boxes."""
    return create_grounder("oracle", None, known=known_boxes(dataset))


def grounding_hits(grounder: Grounder, dataset: Dataset) -> list[bool]:
    """Per known object of every image: does the grounder's top box for its label reach IoU >= 0.5?"""
    hits = []
    for image, objects in known_boxes(dataset):
        ranked = grounder.ground(image, [label for label, _ in objects])
        for (_, truth), detections in zip(objects, ranked):
            top = detections[0].boxes if detections else ()
            hits.append(bool(top) and max(b.iou(truth) for b in top) >= IOU_THRESHOLD)
    return hits


def grounding_report(grounders: dict[str, Grounder], dataset: Dataset, seed: int = 0, n_bootstrap: int = 1000) -> dict:
    """``{grounder: {"value": %, "ci95": [lo, hi], "n": objects}}``."""
    out = {}
    for name, grounder in grounders.items():
        hits = grounding_hits(grounder, dataset)
        out[name] = {**metrics.summarise(hits, n_bootstrap, seed), "n": len(hits)}
    return out
