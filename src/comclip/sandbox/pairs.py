"""Minimal-pair sets on sandbox scenes, Winoground-style: two images, two captions with the
same words (or one word apart), caption c true of image c only.

The classic tasks (:mod:`comclip.sandbox.classic_pairs`: binding, object and order swaps,
substitutions) settle from what objects are and where their boxes are; the relations only
pixels show (:mod:`comclip.sandbox.pixel_pairs`: depth, direction) and the crowded scenes
(3-5 objects, distractors sharing a shape or a colour with the named ones) do not. Items are
a pure function of (task, seed, index); a new task never changes an old one's items.
"""

from __future__ import annotations

import numpy as np

from comclip.jsonfile import write_whole
from comclip.sandbox.classic_pairs import CLASSIC_BUILDERS, TASKS, MinimalPair, fits_apart, inside
from comclip.sandbox.pixel_pairs import NEW_BUILDERS

#: Every task: the classic four first (their random streams are numbered as before), then the new.
ALL_TASKS = (*TASKS, *NEW_BUILDERS)
BUILDERS = {**CLASSIC_BUILDERS, **NEW_BUILDERS}
#: The generator's version, bumped whenever it makes other items for a seed (2: crowded
#: scenes' distractors no longer lie under a named object of their colour).
GENERATOR = 2
__all__ = ["ALL_TASKS", "GENERATOR", "TASKS", "MinimalPair", "export_pairs", "make_pair", "minimal_pairs"]


def make_pair(task: str, seed: int, index: int) -> MinimalPair:
    """Item ``index`` of ``task`` for ``seed`` (independent of how many items are drawn)."""
    if task not in ALL_TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(ALL_TASKS)}")
    rng = np.random.default_rng([seed, ALL_TASKS.index(task), index])  # the classic tasks first, as before
    fits = fits_apart if task in TASKS else inside  # the new tasks place their objects themselves
    while True:
        pair = BUILDERS[task](rng, f"{task}/{seed}/{index}")
        if pair is not None and all(fits(s) for s in pair.scenes):
            return pair


def minimal_pairs(task: str, seed: int, n: int) -> list[MinimalPair]:
    """The first ``n`` items of ``task`` for ``seed``."""
    return [make_pair(task, seed, i) for i in range(n)]


def export_pairs(tasks, seed: int, n: int, out_dir) -> int:
    """Write each pair's two images as PNG files plus ``pairs.jsonl`` (captions, true boxes with
    their phrases, and the boxes of what shows of the named objects) into ``out_dir``; returns
    the number of pairs."""
    import json
    from pathlib import Path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for task in tasks:
        for pair in minimal_pairs(task, seed, n):
            stem = pair.id.replace("/", "_")
            for k, scene in enumerate(pair.scenes):
                scene.render().save(out / f"{stem}_img_{k}.png")
            rows.append(
                {
                    "id": pair.id,
                    "task": pair.task,
                    "subset": pair.subset,
                    "captions": list(pair.captions),
                    "images": [f"{stem}_img_{k}.png" for k in range(2)],
                    "boxes": [[[o.phrase, o.box.as_list()] for o in s.objects if o.named] for s in pair.scenes],
                    "shown_boxes": [[[o.phrase, b.as_list()] for o, b in s.named_shown()] for s in pair.scenes],
                    "distractors": [[[o.phrase, o.box.as_list()] for o in s.objects if not o.named] for s in pair.scenes],
                    "relation_boxes": [b.as_list() for b in pair.relation_boxes],
                }
            )
    write_whole(out / "pairs.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    return len(rows)
