"""Benchmark: the whole Pulumi program under mocks for synthetic N-node, three-cloud stacks.

Usage: .venv/bin/python -m bench.program [N ...]   (default 10 50 100 200 400)

Each run is a fresh Python process (imports included, as `pulumi up` pays them) and prints
wall and CPU seconds, the program's own seconds, resources registered, invokes and peak
RSS. The stack is a full mesh with preshared keys (N-1 peers per node, the worst case).
Where that cannot fit AWS's 16 KB or Hetzner's 32 KiB, the program must refuse with one line;
the row says so, and the same N is then timed twice: as `topology: hub` with every GCP node a
hub (the shape the error points to), and as a full mesh of GCP nodes only (every node with
N-1 peers: the N-squared worst case that still deploys). Figures only, no asserts; targets on
a 2-core machine: 200 nodes < 10 s and 400 nodes < 30 s wall.
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
from typing import Any

REPO = Path(__file__).resolve().parent.parent
HARNESS = REPO / "tests" / "program"
SIZES = (10, 50, 100, 200, 400)
TARGETS = {200: 10.0, 400: 30.0}  # nodes -> wall seconds
SHAPES = {"mesh": "full mesh", "hub": "hub (GCP hubs)", "gcp": "full mesh, GCP"}


def child(n: int, shape: str) -> None:
    """Runs inside the fresh process: build the config, run the program, report as JSON."""
    started = time.perf_counter()
    sys.path[:0] = [str(REPO), str(HARNESS)]
    # The mocks harness lives with the program tests; imports are part of what is measured.
    synthetic = importlib.import_module("synthetic_stacks")
    run_program = importlib.import_module("wgmesh_mocks").run_program

    imported = time.perf_counter()
    clouds = ("gcp",) if shape == "gcp" else ("aws", "gcp", "hcloud")
    run = run_program(
        f"bench{n}",
        synthetic.three_clouds(n, gcp_hubs=shape == "hub", clouds=clouds, quotas=synthetic.raised_quotas(n)),
    )
    done = time.perf_counter()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    report = {
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "import_s": imported - started,
        "program_s": done - imported,
        "resources": len(run.resources),
        "invokes": len(run.invokes),
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "error": None if run.error is None else str(run.error).splitlines()[0],
    }
    print(json.dumps(report))


def measure(n: int, shape: str) -> dict[str, Any]:
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "bench.program", "--child", str(n), "--shape", shape],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if out.returncode != 0:
        last = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"
        return {"wall_s": wall, "crashed": last}
    report: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    report["wall_s"] = wall
    return report


def row(n: int, shape: str, r: dict[str, Any]) -> str:
    label = f"{n:>5} {SHAPES[shape]:>15}"
    if "crashed" in r:
        return f"{label} crashed: {r['crashed']}"
    figures = (
        f"{r['wall_s']:>7.2f} {r['cpu_s']:>6.2f} {r['program_s']:>9.2f} "
        f"{r['resources']:>9} {r['invokes']:>7} {r['peak_rss_mib']:>8.0f}"
    )
    if r["error"]:
        return f"{label} {figures}  refused: {_short(r['error'])}"
    return f"{label} {figures}  ok"


def _short(message: str, width: int = 110) -> str:
    return message if len(message) <= width else message[: width - 3] + "..."


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("nodes", nargs="*", type=int, default=list(SIZES))
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="mesh", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.shape)
        return
    print(
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start "
        "(wall time grows with load, CPU time less)"
    )
    print(
        f"{'nodes':>5} {'stack':>15} {'wall s':>7} {'cpu s':>6} {'program s':>9} "
        f"{'resources':>9} {'invokes':>7} {'RSS MiB':>8}  result"
    )
    for n in args.nodes:
        shapes = ["mesh"]
        while shapes:
            shape = shapes.pop(0)
            r = measure(n, shape)
            print(row(n, shape, r), flush=True)
            if shape == "mesh" and r.get("error"):
                shapes += ["hub", "gcp"]
                continue
            if n in TARGETS and "crashed" not in r:
                verdict = "within" if r["wall_s"] < TARGETS[n] else "OVER"
                print(f"      target {n} nodes < {TARGETS[n]:.0f} s wall: {verdict}")


if __name__ == "__main__":
    main()
