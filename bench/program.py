"""Benchmark: the whole Pulumi program under mocks for a synthetic N-node, 3-cloud stack.

Usage: .venv/bin/python bench/program.py [N ...]   (default 50)

Each N runs in a fresh Python process (imports included, as `pulumi preview` would pay them)
and prints wall seconds, the program's own seconds, resources registered, invokes and peak
RSS. Figures only, no asserts: the target is 50 nodes under 15 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HARNESS = REPO / "tests" / "program"
TARGET_NODES, TARGET_SECONDS = 50, 15.0


def child(n: int) -> None:
    """Runs inside the fresh process: build the config, run the program, report as JSON."""
    started = time.perf_counter()
    sys.path[:0] = [str(REPO), str(HARNESS)]
    # The mocks harness lives with the program tests; imports are part of what is measured.
    synthetic = importlib.import_module("synthetic_stacks")
    run_program = importlib.import_module("wgmesh_mocks").run_program

    imported = time.perf_counter()
    run = run_program(f"bench{n}", synthetic.three_clouds(n))
    done = time.perf_counter()
    if run.error is not None:
        raise SystemExit(f"program failed: {run.error}")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    report = {
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "import_s": imported - started,
        "program_s": done - imported,
        "resources": len(run.resources),
        "custom": sum(1 for r in run.resources if r.custom),
        "invokes": len(run.invokes),
    }
    print(json.dumps(report))


def measure(n: int) -> dict[str, float] | str:
    started = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(n)], cwd=REPO, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - started
    if out.returncode != 0:
        return out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"
    report: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    report["wall_s"] = wall
    # ru_maxrss of children is the largest child so far: exact for the first, an upper bound after.
    report["peak_rss_mib"] = max(peak_kib, before) / 1024
    return report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("nodes", nargs="*", type=int, default=[TARGET_NODES])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child)
        return
    load = os.getloadavg()[0]
    print(
        f"{os.cpu_count()} cores, load average {load:.1f} at start (wall time grows with load, CPU time less)"
    )
    print(
        f"{'nodes':>5} {'wall s':>7} {'cpu s':>6} {'import s':>8} {'program s':>9} {'resources':>9} "
        f"{'cloud':>6} {'invokes':>7} {'peak RSS MiB':>12}"
    )
    for n in args.nodes:
        r = measure(n)
        if isinstance(r, str):
            print(f"{n:>5} failed: {r}")
            continue
        print(
            f"{n:>5} {r['wall_s']:>7.2f} {r['cpu_s']:>6.2f} {r['import_s']:>8.2f} {r['program_s']:>9.2f} "
            f"{r['resources']:>9.0f} {r['custom']:>6.0f} {r['invokes']:>7.0f} {r['peak_rss_mib']:>12.0f}"
        )
        if n == TARGET_NODES:
            verdict = "within" if r["wall_s"] < TARGET_SECONDS else "OVER"
            print(
                f"target {TARGET_NODES} nodes < {TARGET_SECONDS:.0f} s wall: {verdict} ({r['wall_s']:.2f} s)"
            )


if __name__ == "__main__":
    main()
