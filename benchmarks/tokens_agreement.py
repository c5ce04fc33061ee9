"""How close a sub-image from patch tokens (``--subimage tokens``) is to the filled sub-image
it stands for, on the trained sandbox models: the cosine between the two embeddings of every
object's box and every pair's union in sandbox scenes, for the black fill (the paper's) and
the mean fill (comclip-plus's), and how often each ranks the region's own phrase first among
the scene's phrases. Last line: JSON.

    python benchmarks/tokens_agreement.py --seed 300 --n 100
"""

from __future__ import annotations

import argparse
import json


def agreement(model: str, seed: int, n: int) -> dict:
    import torch

    from comclip.backbones import create_backbone
    from comclip.imaging.subimages import SubimageMaker, make_subimage
    from comclip.sandbox.pairs import TASKS, minimal_pairs

    backbone = create_backbone(model, device="cpu")
    scenes = [pair.scenes[0] for task in TASKS for pair in minimal_pairs(task, seed, n)]
    images = [scene.render() for scene in scenes]
    regions, phrases = [], []
    for index, scene in enumerate(scenes):
        for obj in scene.objects:
            regions.append((index, [obj.box]))
            phrases.append(f"a {obj.phrase}")
        if len(scene.objects) > 1:
            regions.append((index, [o.box for o in scene.objects[:2]]))
            phrases.append(None)
    maker = SubimageMaker(images, None)
    texts = sorted({p for p in phrases if p})
    text_rows = backbone.encode_texts(texts)
    out = {}
    for fill in ("black", "mean"):
        tokens = torch.cat(
            [
                backbone._token_rows([maker.region(i, b, f"tokens-{fill}") for i, b in regions[s : s + 512]])
                for s in range(0, len(regions), 512)
            ]
        )
        filled = backbone.encode_views([make_subimage(images[i], b, fill) for i, b in regions])
        cosines = (tokens * filled).sum(dim=1)
        single = [k for k, p in enumerate(phrases) if p]
        truth = torch.tensor([texts.index(phrases[k]) for k in single])
        out[fill] = {
            "cos_mean": round(float(cosines.mean()), 4),
            "cos_p5": round(float(cosines.quantile(0.05)), 4),
            "cos_min": round(float(cosines.min()), 4),
            "own_phrase_top1_tokens": round(float(((tokens[single] @ text_rows.T).argmax(1) == truth).float().mean()) * 100, 1),
            "own_phrase_top1_fill": round(float(((filled[single] @ text_rows.T).argmax(1) == truth).float().mean()) * 100, 1),
        }
    return {"regions": len(regions), **out}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=300)
    parser.add_argument("--n", type=int, default=100, help="scenes per task")
    parser.add_argument("--models", default="comclip/sandbox,comclip/sandbox-bow")
    args = parser.parse_args()
    figures = {"seed": args.seed, "n": args.n}
    for model in args.models.split(","):
        figures[model] = agreement(model, args.seed, args.n)
        print(model, figures[model])
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
