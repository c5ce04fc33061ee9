"""Throughput of ComCLIP against plain CLIP on fixed workloads, on any device.

    python benchmarks/throughput.py [--device cpu|cuda] [--pixels torch|pil] [--large-queries 1000]

The model is a randomly initialised CLIP with ViT-B/32's exact architecture (so the compute
is the real one's) and CLIP's real tokenizer, written to a temporary folder. Workloads:

(a) ``--groups`` Winoground-style groups, 2 coco-mini photos x their 2 first captions;
(b) re-ranking: CLIP ranks ``--gallery`` photos for each of ``--queries`` captions and
    ComCLIP re-scores the top ``--top``;
(c) the same with ``--large-queries`` captions (coco-mini's captions cycled; 0 skips it).

Captions are parsed before the timed part. On a machine without spaCy, ``--write-parses FILE``
(run where spaCy is) stores every caption's scene graph, and ``--parses FILE`` reads them there
instead of parsing. The sub-images of workload (a) are also encoded on
both pixel paths (tensors on the device, and the PIL reference) and the largest difference of
their embeddings' cosine from 1 is reported (``subimage_max_abs_cos_diff``).

For each: plain CLIP, ComCLIP cold (empty embedding cache) and warm (a second run on the same
cache, fresh pipeline objects as in a new process), in seconds and pairs per second, plus the
ComCLIP / CLIP ratios, the speed-up of batched over one-at-a-time encoding (fp32, and under
bfloat16 autocast), the most any batching could gain on this CPU (the forward pass's counted
FLOPs at the CPU's measured matrix-multiply peak; on CPU only), the time to decode the photo
files with 0, 1 and 2 worker processes, peak resident memory, and on CUDA the peak memory
allocated on the GPU. The last line is one JSON object for scripts.
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
        config = CLIPConfig(
            text_config={
                "bos_token_id": tokenizer.bos_token_id,
                "eos_token_id": tokenizer.eos_token_id,
                "pad_token_id": tokenizer.pad_token_id,
            }
        )
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
    return {
        "gflop_per_image": flop / 1e9,
        "gflops_one_at_a_time": flop / seconds_per_image / 1e9,
        "gflops_peak": peak / 1e9,
        "bound": peak * seconds_per_image / flop,
    }


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="coco-mini folder (captions.json and the photos)")
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--large-queries", type=int, default=1000, help="queries of workload (c); 0 skips it")
    parser.add_argument("--gallery", type=int, default=100)
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--precision", default="fp32", help="of the workloads: fp32 (default), amp_bf16 or amp_fp16 (CUDA)")
    parser.add_argument("--device", default="cpu", help="torch device of the workloads: cpu (default) or cuda")
    parser.add_argument("--pixels", default="torch", choices=["torch", "pil"], help="pixel path of the workloads")
    parser.add_argument(
        "--region",
        default=None,
        choices=["crop", "mask", "patches"],
        help="how the clip grounder scores candidates (default: the pipeline's default)",
    )
    parser.add_argument(
        "--subimage",
        default="fill",
        choices=["fill", "tokens"],
        help="how sub-images are encoded, as comclip eval --subimage: fill (the paper) or tokens",
    )
    parser.add_argument("--parses", help="caption -> scene graph JSON (from --write-parses): looked up instead of parsed")
    parser.add_argument("--write-parses", help="parse every caption of --data with spaCy into this JSON file, and stop")
    parser.add_argument(
        "--batching",
        default=None,
        choices=["group", "pad", "like"],
        help="with --subimage tokens: regions of equal length batched together, padded, or padded within like "
        "lengths (default: the library's)",
    )
    return parser.parse_args()


class Workloads:
    """The model, the photos and captions, and how each workload is run cold and warm."""

    def __init__(self, args, backbone, work: Path, rows: list, images: list):
        from comclip.backbones.cached import encoder

        self.args, self.backbone, self.work = args, encoder(backbone), work  # its cache is swapped per workload
        self.rows, self.images = rows, images
        self.gallery = images[: args.gallery]
        self.graphs = json.loads(Path(args.parses).read_text()) if args.parses else None

    def fresh_pipeline(self):  # new grounder and parser memory, as in a new process
        from comclip.grounding import create_grounder
        from comclip.parsing import create_parser
        from comclip.pipeline import ComCLIP

        return ComCLIP(
            self.backbone,
            parser=create_parser("given", graphs=self.graphs) if self.graphs else create_parser("spacy"),
            grounder=create_grounder("clip", self.backbone, region=self.args.region),
            subimage=self.args.subimage,
        )

    def parse_first(self, captions) -> None:  # parses are stored in the cache before the timed part
        from comclip.pipeline.memory import Stored

        pipeline = self.fresh_pipeline()
        Stored(self.backbone, pipeline.grounder, pipeline.parser).parse(pipeline.parser, list(dict.fromkeys(captions)))

    @staticmethod
    def in_chunks(scorer, items, size: int = 16):  # as the evaluation runner feeds a scorer
        return [getattr(m, "matrix", m) for k in range(0, len(items), size) for m in scorer.batch(items[k : k + size])]

    def synchronized(self, function):
        import torch

        def run():
            result = function()
            if self.backbone.device.type == "cuda":
                torch.cuda.synchronize()
            return result

        return run

    def cold_and_warm(self, name: str, captions, run) -> tuple[float, float, list, list]:
        """``run(pipeline)`` on an empty cache, then again on that cache with fresh pipeline objects."""
        from comclip.cache.embeddings import SQLiteCache

        self.backbone.cache = SQLiteCache(self.work / f"cache-{name}.sqlite")
        self.parse_first(captions)
        cold, cold_out = timed(self.synchronized(lambda: run(self.fresh_pipeline())))
        warm, warm_out = timed(self.synchronized(lambda: run(self.fresh_pipeline())))
        return cold, warm, cold_out, warm_out

    def groups(self) -> dict:
        """Workload (a): Winoground-style groups of 2 photos x their first captions."""
        import numpy as np

        from comclip.eval.runs.scorers import clip_scorer, comclip_scorer

        groups = [
            ([self.images[2 * g], self.images[2 * g + 1]], [self.rows[2 * g]["captions"][0], self.rows[2 * g + 1]["captions"][0]])
            for g in range(self.args.groups)
        ]
        self.backbone.cache = None
        clip, _ = timed(self.synchronized(lambda: clip_scorer(self.backbone).batch(groups)))
        cold, warm, cold_scores, warm_scores = self.cold_and_warm(
            "a", [t for _, texts in groups for t in texts], lambda pipeline: self.in_chunks(comclip_scorer(pipeline), groups)
        )
        assert all(np.allclose(a, b, atol=1e-5) for a, b in zip(cold_scores, warm_scores)), "warm scores differ from cold"
        return {"clip": clip, "cold": cold, "warm": warm, "pairs": 4 * len(groups), "items": groups}

    def rerank(self, name: str, queries: list[str]) -> dict:
        """Workloads (b) and (c): CLIP ranks the gallery for each caption, ComCLIP re-scores its top K."""
        import torch

        from comclip.eval.runs.scorers import comclip_scorer

        def clip_rank():
            similarity = self.backbone.encode_texts(queries) @ self.backbone.encode_images(self.gallery).T
            return torch.argsort(similarity, dim=1, descending=True)[:, : self.args.top]

        self.backbone.cache = None
        clip, top = timed(self.synchronized(clip_rank))
        groups = [([self.gallery[i] for i in top[q].tolist()], [queries[q]]) for q in range(len(queries))]
        cold, warm, _, _ = self.cold_and_warm(
            name, queries, lambda pipeline: (clip_rank(), self.in_chunks(comclip_scorer(pipeline), groups))
        )
        return {"clip": clip, "cold": cold, "warm": warm, "pairs": len(queries) * self.args.top}


def subimage_cos_diff(workloads: Workloads, groups) -> tuple[float, int]:
    """The largest ``|1 - cos|`` between a sub-image's embedding on the tensor path and on the
    PIL reference, over every distinct sub-image the pipeline scores in ``groups``."""
    import torch

    from comclip.imaging.subimages import SubimageMaker

    backbone, pipeline = workloads.backbone, workloads.fresh_pipeline()
    backbone.cache = None
    regions = []  # (image, boxes) of every part of every pair
    for images, texts in groups:
        for image, row in zip(images, pipeline.score_details(images, texts)):
            regions += [(image.image, tuple(part.boxes)) for result in row for part in result.parts]
    distinct = list(dict.fromkeys((id(image), boxes) for image, boxes in regions))
    by_id = {id(image): image for image, _ in regions}
    embeddings = {}
    for path in ("torch", "pil"):
        before, backbone.pixels = backbone.pixels, path
        makers = {key: SubimageMaker([image], backbone.pixel_device) for key, image in by_id.items()}
        views = [makers[key].sub(0, list(boxes), pipeline.config.subimage_fill) for key, boxes in distinct]
        embeddings[path] = torch.cat([backbone.encode_views(views[k : k + 256]) for k in range(0, len(views), 256)])
        backbone.pixels = before
    cosines = (embeddings["torch"] * embeddings["pil"]).sum(dim=1)
    return float((1 - cosines).abs().max()), len(distinct)


def encoding_figures(backbone, images, rows, need: int, batch_size: int, precision: str) -> dict:
    """Batched against one-at-a-time encoding of 32 photos (fp32 and bf16 autocast) and of 64
    captions, and on CPU what batching could gain at best."""
    import torch

    backbone.cache = None
    sample = [im.image for im in images[:32]]
    encode = {}
    for each in ("fp32", "amp_bf16"):
        backbone.precision = each
        backbone.encode_images(sample[:2])  # warm-up: first-call allocations, kernel choice
        for size in (1, batch_size):
            backbone.batch_size = size
            encode[each, size] = timed(lambda: backbone.encode_images(sample))
    backbone.precision, backbone.batch_size = precision, batch_size
    single, batched = encode["fp32", 1][0], encode["fp32", batch_size][0]
    assert torch.allclose(encode["fp32", 1][1], encode["fp32", batch_size][1], atol=1e-5)
    captions = [c for r in rows[:need] for c in r["captions"]][:64]
    texts = {}
    backbone.encode_texts(captions[:2])
    for size in (1, batch_size):
        backbone.batch_size = size
        texts[size], _ = timed(lambda: backbone.encode_texts(captions))
    backbone.batch_size = batch_size
    figures = {
        "encode": {f"{p} batch {n}": round(t, 3) for (p, n), (t, _) in encode.items()},
        "batched_speedup": round(single / batched, 3),
        "batched_speedup_amp_bf16": round(single / encode["amp_bf16", batch_size][0], 3),
        "text_batched_speedup": round(texts[1] / texts[batch_size], 3),
    }
    if backbone.device.type == "cpu":
        figures["batched_speedup_bound_fp32"] = round(forward_ceiling(backbone, sample[0], single / len(sample))["bound"], 3)
    return figures


def decode_figures(data: Path, rows, need: int) -> dict:
    """Decoding the photo files in this process and in 1 and 2 worker processes (comclip eval
    --workers), in chunks of 32 as a run does, the workers started once."""
    from comclip.imaging.prefetch import ImageLoader

    paths = [data / r["image"] for r in rows[:need]]
    chunks = [paths[start : start + 32] for start in range(0, len(paths), 32)]
    return {str(workers): round(timed(lambda: list(ImageLoader(workers).prefetch(chunks)))[0], 3) for workers in (0, 1, 2)}  # noqa: B023 (called at once)


def write_parses(rows: list, path: Path) -> None:
    """Every caption's spaCy scene graph, as ``--parses`` reads them (checked to read back the same)."""
    from comclip.parsing import SceneGraph, create_parser

    parser = create_parser("spacy")
    graphs = {text: parser.parse(text) for text in dict.fromkeys(c for r in rows for c in r["captions"])}
    assert all(SceneGraph.from_dict(g.to_dict(), text=t) == g for t, g in graphs.items()), "a graph does not read back"
    path.write_text(json.dumps({text: graph.to_dict() for text, graph in graphs.items()}))
    print(f"wrote {len(graphs)} scene graphs to {path}", file=sys.stderr)


def build_model(work: Path) -> Path:
    """The random ViT-B/32, built in a child process so that peak memory is the workloads'."""
    context = multiprocessing.get_context("spawn")
    builder = context.Process(target=vit_b32_model, args=(work / "model",))
    builder.start()
    builder.join()
    if builder.exitcode != 0:
        sys.exit("building the ViT-B/32 model failed")
    return work / "model"


def print_table(results: dict) -> None:
    print("| workload | method | seconds | pairs/s | x CLIP |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        for method in ("clip", "cold", "warm"):
            label = "clip" if method == "clip" else f"comclip {method}"
            print(f"| {name} | {label} | {r[method]:.2f} | {r['pairs'] / r[method]:.1f} | {r[method] / r['clip']:.2f} |")


def main() -> int:
    args = arguments()
    from comclip.cli import use_process_environment

    use_process_environment()  # as the command line runs, set before torch loads
    import torch

    from comclip.backbones import create_backbone
    from comclip.backbones.vit import tokens
    from comclip.imaging.files import load_image

    if args.batching:
        tokens.BATCHING = args.batching
    torch.manual_seed(0)
    data = Path(args.data)
    rows = json.loads((data / "captions.json").read_text())
    if args.write_parses:
        write_parses(rows, Path(args.write_parses))
        return 0
    need = max(2 * args.groups, args.gallery)
    if len(rows) < need:
        sys.exit(f"{args.data} has {len(rows)} images; the workload needs {need}")
    images = [load_image(data / r["image"]) for r in rows[:need]]
    work = Path(tempfile.mkdtemp(prefix="comclip-throughput-"))
    print(f"writing a random ViT-B/32 CLIP to {work / 'model'} ...", file=sys.stderr)
    backbone = create_backbone(
        str(build_model(work)), device=args.device, batch_size=args.batch_size, precision=args.precision, pixels=args.pixels
    )
    workloads = Workloads(args, backbone, work, rows, images)
    captions = [c for r in rows for c in r["captions"]]
    results = {"a": workloads.groups(), "b": workloads.rerank("b", [rows[q]["captions"][1] for q in range(args.queries)])}
    if args.large_queries:
        results["c"] = workloads.rerank("c", [captions[q % len(captions)] for q in range(args.large_queries)])
    workload_peak = peak_rss_mib()  # the goal's figure; the extra measurements below add bf16 weight copies
    cuda_peak = torch.cuda.max_memory_allocated() / 2**20 if backbone.device.type == "cuda" else None
    cos_diff, compared = subimage_cos_diff(workloads, results["a"].pop("items"))

    print(
        f"\nworkloads: (a) {args.groups} groups of 2 images x 2 captions; (b) top {args.top} of {args.gallery} images "
        f"re-ranked for {args.queries} captions; (c) the same for {args.large_queries} captions; pixels {backbone.pixels}\n"
    )
    print_table(results)
    print(f"\nsub-images of (a) on the tensor path against PIL: largest |1 - cos| {cos_diff:.2e} over {compared}")
    figures = {
        "clip_s": round(results["a"]["clip"], 3),
        "comclip_cold_s": round(results["a"]["cold"], 3),
        "comclip_warm_s": round(results["a"]["warm"], 3),
        "cold_ratio": round(results["a"]["cold"] / results["a"]["clip"], 3),
        "warm_ratio": round(results["a"]["warm"] / results["a"]["clip"], 3),
        "rerank_clip_s": round(results["b"]["clip"], 3),
        "rerank_cold_s": round(results["b"]["cold"], 3),
        "rerank_warm_s": round(results["b"]["warm"], 3),
        "rerank_cold_ratio": round(results["b"]["cold"] / results["b"]["clip"], 3),
        "rerank_warm_ratio": round(results["b"]["warm"] / results["b"]["clip"], 3),
        "seconds": {name: {m: round(r[m], 3) for m in ("clip", "cold", "warm")} for name, r in results.items()},
        "pairs_per_s": {
            name: {
                "clip": round(r["pairs"] / r["clip"], 1),
                "comclip_cold": round(r["pairs"] / r["cold"], 1),
                "comclip_warm": round(r["pairs"] / r["warm"], 1),
            }
            for name, r in results.items()
        },
        "device": str(backbone.device),
        "pixels": backbone.pixels,
        "subimage": args.subimage,
        "batching": tokens.BATCHING if args.subimage == "tokens" else None,
        "precision": args.precision,
        "peak_rss_mib": round(workload_peak, 1),
        "cuda_peak_mib": cuda_peak and round(cuda_peak, 1),
        "subimage_max_abs_cos_diff": cos_diff,
        "subimages_compared": compared,
        **encoding_figures(backbone, images, rows, need, args.batch_size, args.precision),
        "decode_s": decode_figures(data, rows, need),
        "grounder": workloads.fresh_pipeline().grounder.describe(),
    }
    print(
        f"peak resident memory during the workloads: {workload_peak:.0f} MiB"
        + (f"; CUDA peak allocated {cuda_peak:.0f} MiB" if cuda_peak else "")
    )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
