"""Search speed: index build throughput against plain CLIP encoding of the same images, bytes
per image, and query latency (query encoding, FAISS shortlist and re-ranking included).

    python benchmarks/search.py --model sandbox --images 100000 --queries 50
    python benchmarks/search.py --model vit-b32 --images 2000 --queries 20

``sandbox`` is the shipped ``comclip/sandbox-bow``; ``vit-b32`` a randomly initialised CLIP
with ViT-B/32's exact architecture (transformers' defaults) and CLIP's tokenizer, so the
compute is the real model's. Images are sandbox scenes (every image of the minimal pairs of
binding, object-swap and order-swap, seed ``--seed``), queries their captions. The index is
built from an empty folder with the methods of ``--method`` (default all three); latency is
per query for ``--search-method`` at ``--candidates`` (default 100), the first query (which
loads spaCy) left out. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["sandbox", "vit-b32"], default="sandbox")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--method", default="clip,comclip,comclip-plus")
    parser.add_argument("--search-method", default="comclip-plus")
    parser.add_argument("--seed", type=int, default=300)
    args = parser.parse_args()

    import torch

    from comclip.backbones import create_backbone
    from comclip.search import Index
    from comclip.search.benchmark import render_gallery

    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        n_pairs = max(1, -(-args.images // 6))
        queries = render_gallery(["binding", "object-swap", "order-swap"], args.seed, n_pairs, folder / "images")[0]
        paths = sorted((folder / "images").glob("*.png"))[: args.images]
        model = "comclip/sandbox-bow"
        if args.model == "vit-b32":
            sys.path.insert(0, str(Path(__file__).parent))
            from throughput import vit_b32_model

            model = str(vit_b32_model(folder / "vit-b32"))
        backbone = create_backbone(model, device="cpu")
        start = time.perf_counter()
        backbone.encode_images(paths)
        clip_s = time.perf_counter() - start
        start = time.perf_counter()
        index = Index.build(paths, folder / "index", backbone, methods=args.method.split(","))
        build_s = time.perf_counter() - start
        info = index.info()
        captions = [q[1] for q in queries][: args.queries + 1]
        latencies = []
        for caption in captions:
            start = time.perf_counter()
            result = index.search(caption, top=10, candidates=args.candidates, method=args.search_method)[0]
            latencies.append(time.perf_counter() - start)
            assert result.decoded == 0
        latencies = sorted(latencies[1:])
        figures = {
            "model": args.model,
            "images": len(index),
            "methods": args.method,
            "torch_threads": torch.get_num_threads(),
            "clip_encode_s": round(clip_s, 2),
            "build_s": round(build_s, 2),
            "build_images_per_s": round(len(index) / build_s, 2),
            "build_over_clip": round(build_s / clip_s, 2),
            "bytes_per_image": round(info["bytes_per_image"]),
            "search_method": args.search_method,
            "candidates": args.candidates,
            "queries": len(latencies),
            "latency_p50_ms": round(1000 * statistics.median(latencies), 1),
            "latency_p95_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 1),
        }
        print(
            f"{len(index)} images: build {build_s:.1f} s ({figures['build_over_clip']}x CLIP's {clip_s:.1f} s), "
            f"{figures['bytes_per_image']} bytes/image; query p50 {figures['latency_p50_ms']} ms, p95 {figures['latency_p95_ms']} ms"
        )
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
