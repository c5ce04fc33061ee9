"""Search speed: index build throughput against plain CLIP encoding of the same images, bytes
per image, and query latency (query encoding, FAISS shortlist and re-ranking included).

    python benchmarks/search.py --model sandbox --images 100000 --queries 50
    python benchmarks/search.py --model vit-b32 --images 2000 --queries 20

``sandbox`` is the shipped ``comclip/sandbox-bow``; ``vit-b32`` a randomly initialised CLIP
with ViT-B/32's exact architecture (transformers' defaults) and CLIP's tokenizer, so the
compute is the real model's. Images are sandbox scenes (every image of the minimal pairs of
binding, object-swap and order-swap, seed ``--seed`` + 1), queries the captions of other
pairs (seed ``--seed``). The index is built from an empty folder with the methods of
``--method`` (default all three), and plain CLIP encodes the same files just before and
just after it (the ratio is to their mean, so a machine whose speed drifts moves both);
latency is per query for ``--search-method`` at ``--candidates`` (default 100), query
encoding, parsing, the FAISS shortlist and re-ranking included, the first query (which
loads spaCy) left out; a query that needed an image file or a forward pass would fail the
script. ``--keep DIR`` keeps the index, and a second run on it
measures the queries again without rebuilding. The last line is one JSON object.
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
    parser.add_argument(
        "--subimage", choices=["fill", "tokens"], help="how the index's sub-images are encoded (default: the methods')"
    )
    parser.add_argument(
        "--keep", metavar="DIR", help="build in DIR and keep it; a DIR built before is searched again, not rebuilt"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        folder = Path(args.keep or work)
        figures = measure(args, folder)
    built = (
        f"build {figures['build_s']} s ({figures['build_over_clip']}x CLIP's {figures['clip_encode_s']} s)"
        if "build_s" in figures
        else "index kept from an earlier run"
    )
    print(
        f"{figures['images']} images: {built}, {figures['bytes_per_image']} bytes/image; query p50 "
        f"{figures['latency_p50_ms']} ms, p95 {figures['latency_p95_ms']} ms"
    )
    print(json.dumps(figures))
    return 0


def measure(args: argparse.Namespace, folder: Path) -> dict:
    import torch

    from comclip.backbones import create_backbone
    from comclip.search import Index, settle
    from comclip.search.benchmark import render_gallery

    queries, _ = render_gallery(["binding", "object-swap", "order-swap"], args.seed, 1 + args.queries // 6, folder / "queries")
    model = "comclip/sandbox-bow"
    if args.model == "vit-b32":
        sys.path.insert(0, str(Path(__file__).parent))
        from throughput import vit_b32_model

        model = str(folder / "vit-b32") if (folder / "vit-b32").is_dir() else str(vit_b32_model(folder / "vit-b32"))
    backbone = create_backbone(model, device="cpu")
    figures: dict = {"model": args.model, "methods": args.method, "torch_threads": torch.get_num_threads()}
    if not (folder / "index" / "manifest.json").exists():
        figures.update(build(args, folder, backbone))
    index = Index.open(folder / "index", backbone)
    settle(index)  # as comclip search and the app do once the index is open
    latencies, computed = [], []
    for caption in [q[1] for q in queries][: args.queries + 1]:
        start = time.perf_counter()
        result = index.search(caption, top=10, candidates=args.candidates, method=args.search_method)[0]
        latencies.append(time.perf_counter() - start)
        computed.append(result.computed)
    latencies, computed = latencies[1:], computed[1:]  # the first query loads spaCy
    stored_only = sorted(t for t, c in zip(latencies, computed) if c == 0)
    latencies = sorted(latencies)
    return {
        **figures,
        "images": len(index),
        "bytes_per_image": round(index.info()["bytes_per_image"]),
        "search_method": args.search_method,
        "candidates": args.candidates,
        "queries": len(latencies),
        "latency_p50_ms": round(1000 * statistics.median(latencies), 1),
        "latency_p95_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 1),
        # queries that needed a pair sub-image past the union cap (an image decoded and encoded)
        "queries_computing": sum(c > 0 for c in computed),
        "subimages_computed": sum(computed),
        "latency_p50_stored_only_ms": round(1000 * statistics.median(stored_only), 1) if stored_only else None,
    }


def build(args: argparse.Namespace, folder: Path, backbone) -> dict:
    """Draw ``--images`` sandbox scenes, encode them with plain CLIP, then index them (timed)."""
    from comclip.search import Index
    from comclip.search.benchmark import render_gallery

    render_gallery(["binding", "object-swap", "order-swap"], args.seed + 1, max(1, -(-args.images // 6)), folder / "images")
    paths = sorted((folder / "images").glob("*.png"))[: args.images]
    clip_before = clip_encoding(backbone, paths)
    start = time.perf_counter()
    options = {"subimage": args.subimage} if args.subimage else {}
    index = Index.build(paths, folder / "index", backbone, methods=args.method.split(","), options=options, progress=True)
    build_s = time.perf_counter() - start
    clip_after = clip_encoding(backbone, paths)
    clip_s = (clip_before + clip_after) / 2  # a machine whose speed drifts during the build moves both
    return {
        "clip_encode_s": round(clip_s, 2),
        "clip_encode_before_after_s": [round(clip_before, 2), round(clip_after, 2)],
        "build_s": round(build_s, 2),
        "build_images_per_s": round(len(index) / build_s, 2),
        "build_over_clip": round(build_s / clip_s, 2),
        "subimage": args.subimage or "the methods'",
    }


def clip_encoding(backbone, paths: list[Path]) -> float:
    """Seconds plain CLIP takes to decode and encode ``paths``."""
    start = time.perf_counter()
    for chunk in range(0, len(paths), 1024):
        backbone.encode_images(paths[chunk : chunk + 1024])
    return time.perf_counter() - start


if __name__ == "__main__":
    raise SystemExit(main())
