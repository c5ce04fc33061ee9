"""Throughput of ComCLIP against plain CLIP on a fixed CPU workload.

    python benchmarks/throughput.py [--data ../shared/data/coco-mini] [--groups 50] [--queries 50]

The model is a randomly initialised CLIP with ViT-B/32's exact architecture (so the compute
is the real one's) and CLIP's real tokenizer, written to a temporary folder. Workloads:

(a) ``--groups`` Winoground-style groups, 2 coco-mini photos x their 2 first captions;
(b) re-ranking: CLIP ranks ``--gallery`` photos for each of ``--queries`` captions and
    ComCLIP re-scores the top ``--top``.

For each: plain CLIP, ComCLIP cold (empty embedding cache) and warm (a second run on the same
cache, fresh pipeline objects as in a new process), in seconds and pairs per second, plus the
ComCLIP / CLIP ratios, the speed-up of batched over one-at-a-time encoding (fp32, and under
bfloat16 autocast), the most any batching could gain on this CPU (the forward pass's counted
FLOPs at the CPU's measured matrix-multiply peak), the time to decode the photo files with 0,
1 and 2 worker processes, and peak resident memory. The last line is one JSON object for scripts.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "coco-mini"


def vit_b32_model(directory: Path, seed: int = 0) -> Path:
    """A random ViT-B/32-architecture CLIP (transformers' CLIPConfig defaults) with CLIP's BPE."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    from comclip._hf_utils import quiet_transformers
    from comclip.testing import clip_bpe_files

    with quiet_transformers():
        vocab, merges = clip_bpe_files(directory)
        tokenizer = CLIPTokenizer(str(vocab), str(merges))
        torch.manual_seed(seed)
        config = CLIPConfig(text_config={"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                                         "pad_token_id": tokenizer.pad_token_id})
        CLIPModel(config).save_pretrained(directory, safe_serialization=True)
        CLIPProcessor(image_processor=CLIPImageProcessor(), tokenizer=tokenizer).save_pretrained(directory)
    return directory


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(function):
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def forward_ceiling(backbone, image, seconds_per_image: float) -> dict:
    """How fast batching could make the fp32 forward pass at best: its FLOPs (counted by torch)
    over this CPU's peak fp32 matrix-multiply rate, against the rate one at a time reaches."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    pixels = backbone.image_processor(images=[image], return_tensors="pt")["pixel_values"]
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        backbone.model.get_image_features(pixel_values=pixels)
    flop = counter.get_total_flops()
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    seconds, _ = timed(lambda: [a @ b for _ in range(5)])
    peak = 5 * 2 * 2048**3 / seconds
    return {"gflop_per_image": flop / 1e9, "gflops_one_at_a_time": flop / seconds_per_image / 1e9,
            "gflops_peak": peak / 1e9, "bound": peak * seconds_per_image / flop}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="coco-mini folder (captions.json and the photos)")
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--gallery", type=int, default=100)
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--precision", default="fp32", help="of the workloads: fp32 (default) or amp_bf16")
    parser.add_argument("--device", default="cpu", help="torch device of the workloads: cpu (default) or cuda")
    parser.add_argument("--region", default=None, choices=["crop", "mask", "patches"],
                        help="how the clip grounder scores candidates (default: the pipeline's default)")
    args = parser.parse_args()

    import numpy as np
    import torch

    from comclip.backbones import create_backbone
    from comclip.cache import SQLiteCache
    from comclip.eval.scorers import clip_scorer, comclip_scorer
    from comclip.grounding import create_grounder
    from comclip.images import load_image
    from comclip.loading import ImageLoader
    from comclip.parsing import create_parser
    from comclip.pipeline import ComCLIP
    from comclip.stored import Stored

    torch.manual_seed(0)
    rows = json.loads((Path(args.data) / "captions.json").read_text())
    need = max(2 * args.groups, args.gallery)
    if len(rows) < need:
        sys.exit(f"{args.data} has {len(rows)} images; the workload needs {need}")
    images = [load_image(Path(args.data) / r["image"]) for r in rows[:need]]
    groups = [([images[2 * g], images[2 * g + 1]], [rows[2 * g]["captions"][0], rows[2 * g + 1]["captions"][0]])
              for g in range(args.groups)]
    gallery = images[: args.gallery]
    queries = [rows[q]["captions"][1] for q in range(args.queries)]

    work = Path(tempfile.mkdtemp(prefix="comclip-throughput-"))
    print(f"writing a random ViT-B/32 CLIP to {work / 'model'} ...", file=sys.stderr)
    # Built in a child process, so the peak memory below is the workload's, not the build's.
    context = multiprocessing.get_context("spawn")
    builder = context.Process(target=vit_b32_model, args=(work / "model",))
    builder.start()
    builder.join()
    if builder.exitcode != 0:
        sys.exit("building the ViT-B/32 model failed")
    model_dir = work / "model"
    backbone = create_backbone(str(model_dir), device=args.device, batch_size=args.batch_size, precision=args.precision)
    figures = {}

    def in_chunks(scorer, items, size: int = 16):  # as the evaluation runner feeds a scorer; matrices without flags
        return [m[0] if isinstance(m, tuple) else m for k in range(0, len(items), size) for m in scorer.batch(items[k : k + size])]

    def fresh_pipeline() -> ComCLIP:  # new grounder and parser memory, as in a new process
        return ComCLIP(backbone, parser=create_parser("spacy"), grounder=create_grounder("clip", backbone, region=args.region))

    def parse_first(captions) -> None:  # parses are stored in the cache before the timed part: scoring alone is timed
        pipeline = fresh_pipeline()
        Stored(backbone, pipeline.grounder, pipeline.parser).parse(pipeline.parser, list(dict.fromkeys(captions)))

    # (a) Winoground-style groups.
    backbone.cache = None
    clip_a, _ = timed(lambda: clip_scorer(backbone).batch(groups))
    backbone.cache = SQLiteCache(work / "cache-a.sqlite")
    parse_first([t for _, texts in groups for t in texts])
    pipeline = fresh_pipeline()
    cold_a, cold_scores = timed(lambda: in_chunks(comclip_scorer(pipeline), groups))
    pipeline = fresh_pipeline()
    warm_a, warm_scores = timed(lambda: in_chunks(comclip_scorer(pipeline), groups))
    assert all(np.allclose(a, b, atol=1e-5) for a, b in zip(cold_scores, warm_scores)), "warm scores differ from cold"
    pairs_a = 4 * args.groups

    # (b) Re-ranking CLIP's top K.
    def clip_rank():
        similarity = backbone.encode_texts(queries) @ backbone.encode_images([im.image for im in gallery]).T
        return torch.argsort(similarity, dim=1, descending=True)[:, : args.top]

    backbone.cache = None
    clip_b, top = timed(clip_rank)
    rerank_groups = [([gallery[i] for i in top[q].tolist()], [queries[q]]) for q in range(args.queries)]
    backbone.cache = SQLiteCache(work / "cache-b.sqlite")
    parse_first(queries)
    pipeline = fresh_pipeline()
    cold_b, _ = timed(lambda: (clip_rank(), in_chunks(comclip_scorer(pipeline), rerank_groups)))
    pipeline = fresh_pipeline()
    warm_b, _ = timed(lambda: (clip_rank(), in_chunks(comclip_scorer(pipeline), rerank_groups)))
    pairs_b = args.queries * args.top

    workload_peak = peak_rss_mib()  # the goal's figure; the extra measurements below add bf16 weight copies

    # Batched vs one-at-a-time encoding of the same 32 photos, and what this CPU allows.
    backbone.cache = None
    sample = [im.image for im in images[:32]]
    encode = {}
    for precision in ("fp32", "amp_bf16"):
        backbone.precision = precision
        backbone.encode_images(sample[:2])  # warm-up: first-call allocations, oneDNN kernel choice
        for size in (1, args.batch_size):
            backbone.batch_size = size
            encode[precision, size] = timed(lambda: backbone.encode_images(sample))
    backbone.precision, backbone.batch_size = args.precision, args.batch_size
    single, batched = encode["fp32", 1][0], encode["fp32", args.batch_size][0]
    assert torch.allclose(encode["fp32", 1][1], encode["fp32", args.batch_size][1], atol=1e-5)
    ceiling = forward_ceiling(backbone, sample[0], single / len(sample))
    captions = [c for r in rows[:need] for c in r["captions"]][:64]
    texts = {}
    backbone.encode_texts(captions[:2])
    for size in (1, args.batch_size):
        backbone.batch_size = size
        texts[size], _ = timed(lambda: backbone.encode_texts(captions))
    backbone.batch_size = args.batch_size

    # Decoding the photo files: in this process, and in worker processes (comclip eval --workers), in
    # chunks of 32 as a run does; a run starts its DataLoader's workers once, and so does this timing.
    paths = [Path(args.data) / r["image"] for r in rows[:need]]
    chunks = [paths[start : start + 32] for start in range(0, len(paths), 32)]
    decode = {}
    for workers in (0, 1, 2):
        decode[workers], _ = timed(lambda: list(ImageLoader(workers).prefetch(chunks)))

    print(f"\nworkload (a): {args.groups} groups of 2 images x 2 captions ({pairs_a} pairs)")
    print(f"workload (b): top {args.top} of {args.gallery} images re-ranked for {args.queries} captions ({pairs_b} pairs)\n")
    print("| workload | method | seconds | pairs/s | x CLIP |")
    print("|---|---|---|---|---|")
    for name, clip_s, cold_s, warm_s, pairs in (("a", clip_a, cold_a, warm_a, pairs_a), ("b", clip_b, cold_b, warm_b, pairs_b)):
        for method, seconds in (("clip", clip_s), ("comclip cold", cold_s), ("comclip warm", warm_s)):
            print(f"| {name} | {method} | {seconds:.2f} | {pairs / seconds:.1f} | {seconds / clip_s:.2f} |")
    print(f"\nencoding 32 photos, seconds (one at a time / batch {args.batch_size} / speed-up):")
    for precision in ("fp32", "amp_bf16"):
        one, many = encode[precision, 1][0], encode[precision, args.batch_size][0]
        print(f"  {precision}: {one:.2f} / {many:.2f} / {one / many:.2f}x; against fp32 one at a time {single / many:.2f}x")
    print(f"encoding {len(captions)} captions: {texts[1]:.2f} s one at a time, {texts[args.batch_size]:.2f} s at batch "
          f"{args.batch_size} ({texts[1] / texts[args.batch_size]:.2f}x)")
    print(f"forward pass: {ceiling['gflop_per_image']:.2f} GFLOP per image; one at a time runs at "
          f"{ceiling['gflops_one_at_a_time']:.0f} GFLOP/s, and this CPU's fp32 matrix-multiply peak is "
          f"{ceiling['gflops_peak']:.0f} GFLOP/s, so no batching can beat {ceiling['bound']:.2f}x in fp32")
    print(f"decoding {len(paths)} photos: " + ", ".join(f"{w} workers {t:.2f} s" for w, t in decode.items()))
    print(f"peak resident memory during the workloads: {workload_peak:.0f} MiB")
    figures = {
        "clip_s": round(clip_a, 3), "comclip_cold_s": round(cold_a, 3), "comclip_warm_s": round(warm_a, 3),
        "cold_ratio": round(cold_a / clip_a, 3), "warm_ratio": round(warm_a / clip_a, 3),
        "rerank_clip_s": round(clip_b, 3), "rerank_cold_s": round(cold_b, 3), "rerank_warm_s": round(warm_b, 3),
        "rerank_cold_ratio": round(cold_b / clip_b, 3), "rerank_warm_ratio": round(warm_b / clip_b, 3),
        "device": str(backbone.device),
        "pairs_per_s": {name: {"clip": round(pairs / clip_s, 1), "comclip_cold": round(pairs / cold_s, 1),
                               "comclip_warm": round(pairs / warm_s, 1)}
                        for name, clip_s, cold_s, warm_s, pairs in (("a", clip_a, cold_a, warm_a, pairs_a),
                                                                    ("b", clip_b, cold_b, warm_b, pairs_b))},
        "batched_speedup": round(single / batched, 3), "peak_rss_mib": round(workload_peak, 1),
        "batched_speedup_bound_fp32": round(ceiling["bound"], 3),
        "text_batched_speedup": round(texts[1] / texts[args.batch_size], 3),
        "batched_speedup_amp_bf16": round(single / encode["amp_bf16", args.batch_size][0], 3),
        "decode_s": {str(w): round(t, 3) for w, t in decode.items()},
        "grounder": pipeline.grounder.describe(), "precision": args.precision,
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
