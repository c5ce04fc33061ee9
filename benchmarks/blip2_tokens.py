"""Time BLIP-2 sub-images from patch tokens against filled ones, on a random BLIP-2 retrieval
model of a trained model's layout (224 px views, 14 px patches, 32 query tokens; the width and
depth given), its weights drawn with std 0.02 as a trained model's scale (transformers' own
initialisation of the tiny test model leaves activations near 1e-9, where the CPU's slow
subnormal arithmetic, not the work, sets the time). Regions are random boxes over 10-20% of
noise images; each run encodes them filled (the mean colour) and from tokens. Last line: JSON.

    python benchmarks/blip2_tokens.py --regions 64 --runs 2
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path


def measure(regions: int, runs: int, width: int, layers: int) -> dict:
    import torch
    from PIL import Image

    from comclip.backbones import create_backbone
    from comclip.boxes import Box
    from comclip.imaging.subimages import SubimageMaker, make_subimage
    from comclip.testing import make_tiny_blip2

    with tempfile.TemporaryDirectory() as folder:
        path = make_tiny_blip2(Path(folder), 1, image_size=224, patch_size=14, width=width, layers=layers, query_tokens=32)
        backbone = create_backbone(str(path), device="cpu")
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in backbone.model.parameters():
            parameter.normal_(0, 0.02)
    rng = random.Random(0)
    images = [Image.effect_noise((320, 240), 60).convert("RGB") for _ in range(max(1, regions // 8))]
    boxes = []
    for n in range(regions):
        w, h = rng.uniform(40, 160), rng.uniform(40, 120)
        x, y = rng.uniform(0, 320 - w), rng.uniform(0, 240 - h)
        boxes.append((n % len(images), [Box(x, y, x + w, y + h)]))
    maker = SubimageMaker(images, None)
    fill, tokens = [], []
    for _ in range(runs):
        start = time.perf_counter()
        backbone.encode_views([make_subimage(images[n], box, "mean") for n, box in boxes])
        fill.append(round(time.perf_counter() - start, 3))
        start = time.perf_counter()
        backbone._token_rows([maker.region(n, box, "tokens-mean") for n, box in boxes])
        tokens.append(round(time.perf_counter() - start, 3))
    ratio = [round(t / f, 3) for t, f in zip(tokens, fill)]
    return {"regions": regions, "width": width, "layers": layers, "fill_s": fill, "tokens_s": tokens, "tokens_over_fill": ratio}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regions", type=int, default=64)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--width", type=int, default=384)
    parser.add_argument("--layers", type=int, default=6)
    args = parser.parse_args()
    result = measure(args.regions, args.runs, args.width, args.layers)
    print(f"fill {result['fill_s']} s, tokens {result['tokens_s']} s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
