"""Grounding accuracy of every clip-grounder choice on sandbox scenes (and the oracle).

    python benchmarks/sandbox_grounding.py [--model comclip/sandbox] [--seed 100] [--n 100]

For each (proposals, region) choice, the share of objects whose top-ranked box for its shape
noun has IoU >= 0.5 with the true box, with a bootstrap 95% interval, plus seconds per image.
Choose on one seed (the sandbox model's defaults were chosen on seed 100) and report on
another.
"""

from __future__ import annotations

import argparse
import json
import time

CHOICES = [
    ("grid", "crop"),
    ("grid", "mask"),
    ("grid", "patches"),
    ("segments", "crop"),
    ("segments", "mask"),
    ("segments", "patches"),
    ("grid+segments", "crop"),
    ("grid+segments", "mask"),
    ("grid+segments", "patches"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="comclip/sandbox")
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--n", type=int, default=100, help="pairs per task (4 tasks, 2 images each)")
    args = parser.parse_args()

    from comclip.backbones import create_backbone
    from comclip.config import PipelineConfig
    from comclip.eval.benchmarks.datasets import load_dataset
    from comclip.eval.reports.grounding_accuracy import grounding_report, oracle_grounder
    from comclip.grounding import create_grounder

    backbone = create_backbone(args.model, batch_size=256)
    dataset = load_dataset("sandbox", seed=args.seed, n=args.n)
    images = sum(len(ex.images) for ex in dataset.examples)
    print(f"model {backbone.name}, seed {args.seed}, {images} images; defaults: {backbone.defaults.get('grounder', {})}\n")
    print("| proposals | region | IoU>=0.5 (%) | 95% interval | ms / image |")
    print("|---|---|---|---|---|")
    rows = {}
    for proposals, region in CHOICES:
        if region == "patches" and not backbone.supports_patches:
            continue
        config = PipelineConfig.layered(backbone.defaults, proposals=proposals, region=region)  # the model's prompt
        grounder = create_grounder("clip", backbone, **config.grounder_options())
        start = time.perf_counter()
        result = grounding_report({"g": grounder}, dataset, seed=args.seed)["g"]
        ms = 1000 * (time.perf_counter() - start) / images
        rows[f"{proposals}/{region}"] = {**result, "ms_per_image": round(ms, 2)}
        print(
            f"| {proposals} | {region} | {result['value']:.1f} | [{result['ci95'][0]:.1f}, {result['ci95'][1]:.1f}] | {ms:.1f} |"
        )
    oracle = grounding_report({"oracle": oracle_grounder(dataset)}, dataset)["oracle"]
    print(f"| oracle | - | {oracle['value']:.1f} | | |")
    print(json.dumps({"seed": args.seed, "model": backbone.name, "choices": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
