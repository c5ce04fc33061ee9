"""Wall and CPU time of the README's main job, ``comclip demo``, as a newcomer's first run,
alone or beside other CPU-bound jobs.

    python benchmarks/demo_time.py [--runs 1] [--warm] [--beside N] [--env KEY=VALUE ...]

Runs ``comclip demo`` in a child process with ``COMCLIP_CACHE`` pointed at a new, empty
folder (a first run: no embedding, parse or grounding cached anywhere) and the output in a
temporary folder; with ``--warm`` it runs again on the same cache (a repeat). With
``--beside N`` each run is measured twice: alone, then beside N busy-looping processes (a
machine shared with other CPU-bound jobs). ``--env`` adds to the demo's environment (for
example ``GOMP_SPINCOUNT=300000``, libgomp's own default, to see what the command line's saves).
Prints each run's wall and CPU seconds (the child's user + system time), then one JSON object
on the last line. Goals: at most 30 s for a first run on a 2-core machine (#27); CPU time
beside another CPU-bound job within 1.3x of the CPU time alone (#38).
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

BUSY_LOOP = "while True: pass"


def timed_demo(cache: Path, out: Path, environment: dict[str, str], beside: int = 0) -> tuple[float, float]:
    """The demo's wall and CPU seconds, beside ``beside`` busy-looping processes."""
    env = {**os.environ, "COMCLIP_CACHE": str(cache), "HF_HUB_OFFLINE": "1", **environment}
    busy = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(beside)]
    try:
        started = time.perf_counter()
        demo = subprocess.Popen(
            [sys.executable, "-m", "comclip", "demo", "--out", str(out)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _, status, usage = os.wait4(demo.pid, 0)
        wall = time.perf_counter() - started
    finally:
        for process in busy:
            process.kill()
            process.wait()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"comclip demo failed: {demo.stderr.read().decode()[-2000:] if demo.stderr else ''}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="first runs, each on a new empty cache (default: 1)")
    parser.add_argument("--warm", action="store_true", help="then one repeat on the last run's cache")
    parser.add_argument("--beside", type=int, default=0, help="also measure each first run beside N busy processes")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="added to the demo's environment")
    args = parser.parse_args()
    environment = dict(item.split("=", 1) for item in args.env)
    work = Path(tempfile.mkdtemp(prefix="comclip-demo-time-"))
    figures: dict = {"first_run_s": [], "first_run_cpu_s": [], "cpus": os.cpu_count(), "machine": platform.machine()}
    figures["environment"] = environment
    if args.beside:
        figures.update(beside=args.beside, beside_run_s=[], beside_run_cpu_s=[])
    for n in range(args.runs):
        wall, cpu = timed_demo(work / f"cache{n}", work / f"out{n}", environment)
        figures["first_run_s"].append(round(wall, 1))
        figures["first_run_cpu_s"].append(round(cpu, 1))
        print(f"first run {n + 1}: {wall:.1f} s, {cpu:.1f} s of CPU (empty cache)", file=sys.stderr)
        if args.beside:
            wall, cpu = timed_demo(work / f"beside-cache{n}", work / f"beside-out{n}", environment, args.beside)
            figures["beside_run_s"].append(round(wall, 1))
            figures["beside_run_cpu_s"].append(round(cpu, 1))
            print(f"  beside {args.beside} busy process(es): {wall:.1f} s, {cpu:.1f} s of CPU", file=sys.stderr)
    if args.beside:
        figures["cpu_ratio_beside"] = [round(b / a, 2) for a, b in zip(figures["first_run_cpu_s"], figures["beside_run_cpu_s"])]
    if args.warm:
        wall, cpu = timed_demo(work / f"cache{args.runs - 1}", work / "out-warm", environment)
        figures["warm_run_s"], figures["warm_run_cpu_s"] = round(wall, 1), round(cpu, 1)
        print(f"repeat: {wall:.1f} s, {cpu:.1f} s of CPU (warm cache)", file=sys.stderr)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
