"""Ablations: a grid of pipeline configurations, chosen on one split and proven on another.

Every configuration is scored on the dev split (a dev seed of the sandbox, or a dev file);
the best one by :func:`criterion` is then evaluated on the test split next to plain CLIP
and the faithful ComCLIP of the paper, with bootstrap intervals. Nothing about the test
split is seen before the choice is made, so its numbers are not tuned on themselves.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from .datasets import Dataset
from .runner import score_examples, summarise_run


#: Grounding choices: name -> (grounder options, what an entity is grounded by, union margin).
GROUNDINGS = {
    "default": ({}, "head", None),  # the clip grounder with the model's own defaults (comclip.json)
    "grid-crop": ({"proposals": "grid", "region": "crop"}, "head", None),
    "grid-crop-union": ({"proposals": "grid", "region": "crop"}, "head", 0.02),
    "grid-crop-phrase": ({"proposals": "grid", "region": "crop"}, "phrase", None),
    "segments+grid-crop": ({"proposals": "grid+segments", "region": "crop"}, "head", None),
    "segments-mask": ({"proposals": "segments", "region": "mask"}, "head", None),
    "segments+grid-patches": ({"proposals": "grid+segments", "region": "patches"}, "head", None),
}
SCORES = (("comclip", 0.0), ("evidence", 0.5), ("evidence", 1.0), ("evidence", 2.0), ("evidence-min", 1.0))
GRIDS = {
    "full": {"score": SCORES, "weighting": ("sum", "softmax"), "fill": ("black", "mean"), "grounding": tuple(g for g in GROUNDINGS if g != "default")},
    "small": {"score": (("comclip", 0.0), ("evidence", 1.0)), "weighting": ("sum",), "fill": ("black", "mean"),
              "grounding": ("default",)},
}


@dataclass(frozen=True)
class Config:
    """One point of the grid."""

    score_mode: str = "comclip"
    evidence_weight: float = 0.0
    weighting: str = "sum"
    fill: str = "black"
    grounding: str = "default"

    @property
    def name(self) -> str:
        score = self.score_mode if self.score_mode == "comclip" else f"{self.score_mode}({self.evidence_weight:g})"
        return f"{score} {self.weighting} {self.fill} {self.grounding}"

    def pipeline_options(self) -> dict:
        grounding = GROUNDINGS[self.grounding]
        options = {"score_mode": self.score_mode, "weighting": self.weighting, "fill": self.fill,
                   "ground_by": grounding[1], "union_margin": grounding[2]}
        if self.score_mode != "comclip":
            options["evidence_weight"] = self.evidence_weight
        return options


def grid(name: str = "full") -> list[Config]:
    spec = GRIDS[name]
    return [Config(score, weight, weighting, fill, grounding)
            for (score, weight), weighting, fill, grounding in itertools.product(spec["score"], spec["weighting"], spec["fill"], spec["grounding"])]


def usable_groundings(backbone) -> list[str]:
    """The grounding choices this backbone supports (patch tokens need a CLIP ViT)."""
    return [name for name, (options, _, _) in GROUNDINGS.items() if options.get("region") != "patches" or backbone.supports_patches]


def headline_metric(summary: dict) -> str:
    """The metric a dataset is judged by: group (Winoground kind), else accuracy, else the first."""
    names = list(summary["metrics"])
    for preferred in ("group", "accuracy", "r@1_t2i"):
        if preferred in names:
            return preferred
    return names[0]


def criterion(summary: dict) -> tuple[float, float]:
    """(macro mean of the headline metric over subsets, macro mean of the second metric): higher is better.

    Macro over subsets so that every task or phenomenon counts equally whatever its size;
    the second value (pairwise accuracy, else the headline again) breaks ties.
    """
    if not summary["metrics"]:
        return (float("-inf"), float("-inf"))
    main = headline_metric(summary)
    second = "pairwise" if "pairwise" in summary["metrics"] else main
    blocks = list(summary["subsets"].values()) or [summary["metrics"]]
    return (float(np.mean([b[main]["value"] for b in blocks if main in b])),
            float(np.mean([b[second]["value"] for b in blocks if second in b])))


@dataclass
class DevResult:
    config: Config
    summary: dict
    score: tuple[float, float] = field(default=(0.0, 0.0))

    def to_dict(self) -> dict:
        return {"config": self.config.name, "options": self.config.pipeline_options(), "grounding": self.config.grounding,
                "criterion": list(self.score), "n_scored": self.summary["n_scored"], "n_failed": self.summary["n_failed"],
                "metrics": self.summary["metrics"], "subsets": self.summary["subsets"]}


def evaluate(dataset: Dataset, method: str, scorer, n_bootstrap: int = 200, seed: int = 0, chunk: int = 64) -> dict:
    """Score every example in memory, batched, and summarise (failures counted, as in the runner)."""
    examples = dataset.examples
    records = list(score_examples(method, scorer, examples, chunk=chunk))
    return summarise_run(records, n_bootstrap, seed)
