"""Peak memory and time of a retrieval evaluation over a large gallery.

    python benchmarks/gallery_memory.py [--images 2000] [--data ../shared/data/coco-mini]

Builds a captions file of ``--images`` gallery entries that cycle through the coco-mini photos
(each entry is decoded on its own, as distinct photos would be), writes a tiny random CLIP,
and runs ``comclip eval retrieval --method clip`` in a child process. Prints the child's
seconds and peak resident memory; the gallery is streamed, so memory should not grow with
the number of images. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "coco-mini"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="coco-mini folder (captions.json and the photos)")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    from comclip.testing import make_tiny_clip

    data = Path(args.data).resolve()
    rows = json.loads((data / "captions.json").read_text())
    work = Path(tempfile.mkdtemp(prefix="comclip-gallery-"))
    gallery = [
        {"image": str(data / rows[n % len(rows)]["image"]), "captions": [f"{rows[n % len(rows)]['captions'][0]} #{n}"]}
        for n in range(args.images)
    ]
    (work / "gallery.json").write_text(json.dumps(gallery))
    make_tiny_clip(work / "model", seed=0)
    command = [
        sys.executable,
        "-m",
        "comclip",
        "eval",
        "retrieval",
        "--data",
        str(work / "gallery.json"),
        "--model",
        str(work / "model"),
        "--method",
        "clip",
        "--no-cache",
        "--workers",
        str(args.workers),
        "--out",
        str(work / "out"),
    ]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"{args.images} gallery images, {args.images} captions: {seconds:.1f} s, peak resident memory {peak:.0f} MiB")
    print(json.dumps({"images": args.images, "seconds": round(seconds, 2), "peak_rss_mib": round(peak, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
