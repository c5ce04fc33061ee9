"""Wall time of the README's main job, ``comclip demo``, as a newcomer's first run.

    python benchmarks/demo_time.py [--runs 1] [--warm]

Runs ``comclip demo`` in a child process with ``COMCLIP_CACHE`` pointed at a new, empty
folder (a first run: no embedding, parse or grounding cached anywhere) and the output in a
temporary folder; with ``--warm`` it runs again on the same cache (a repeat). Prints each
run's seconds, then one JSON object on the last line. The goal (#27): at most 30 s for a first
run on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed_demo(cache: Path, out: Path) -> float:
    env = {**os.environ, "COMCLIP_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "comclip", "demo", "--out", str(out)], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="first runs, each on a new empty cache (default: 1)")
    parser.add_argument("--warm", action="store_true", help="then one repeat on the last run's cache")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="comclip-demo-time-"))
    first = []
    for n in range(args.runs):
        first.append(timed_demo(work / f"cache{n}", work / f"out{n}"))
        print(f"first run {n + 1}: {first[-1]:.1f} s (empty cache)", file=sys.stderr)
    figures = {"first_run_s": [round(t, 1) for t in first], "cpus": os.cpu_count(), "machine": platform.machine()}
    if args.warm:
        figures["warm_run_s"] = round(timed_demo(work / f"cache{args.runs - 1}", work / "out-warm"), 1)
        print(f"repeat: {figures['warm_run_s']:.1f} s (warm cache)", file=sys.stderr)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
