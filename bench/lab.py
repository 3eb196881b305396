"""How long the lab takes to bring a rendered mesh up (prints figures; asserts nothing).

    python -m bench.lab [--stack lab] [--runs 3] [--vm]

netns: seconds from the start of bring-up until wg0 is up on every node and until every
node pair has shaken hands, render excluded and included (median of --runs), and tear-down.
VM (--vm, minutes): first-boot-to-mesh seconds per node from lab.vm, when it offers a way to
measure them; without lab.vm the figure is reported as not available.
Runs under its own namespace prefix and lab dir, so a running `make lab` is not disturbed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from lab import netns
from lab.state import Layout
from lab.teardown import tear_down

BENCH_LAYOUT = Layout(root=Path("/tmp/wgmesh-lab/bench-netns"), prefix="wgm-b-")
VM_TIMEOUT = 900.0


@dataclass(frozen=True)
class NetnsRun:
    render: float
    wg_up: float
    mesh: float | None
    down: float


def netns_run(stack: str) -> NetnsRun:
    tmp = Path(tempfile.mkdtemp(prefix="wgmesh-bench-"))
    try:
        t0 = time.monotonic()
        with contextlib.redirect_stdout(io.StringIO()):
            netns.render(stack, tmp / "render")
        rendered = time.monotonic() - t0
        result = netns.bring_up(tmp / "render", layout=BENCH_LAYOUT)
        t1 = time.monotonic()
        tear_down(BENCH_LAYOUT)
        return NetnsRun(rendered, result.wg_up_seconds, result.mesh_seconds, time.monotonic() - t1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _median(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.2f} s" if values else "n/a"


def report_netns(stack: str, runs: list[NetnsRun]) -> None:
    meshes = [r.mesh for r in runs if r.mesh is not None]
    print(f"netns lab, stack {stack}, {len(runs)} runs (median):")
    rows = [
        ("render (tools.render, in process)", _median([r.render for r in runs])),
        ("bring-up until wg0 is up on every node", _median([r.wg_up for r in runs])),
        ("bring-up until every pair shook hands", _median(meshes) + "  (render excluded)"),
        ("render + bring-up until every handshake", _median([r.render + m for r, m in _with_mesh(runs)])),
        ("tear-down", _median([r.down for r in runs])),
    ]
    for label, value in rows:
        print(f"  {label:42} {value}")
    if len(meshes) < len(runs):
        print(f"  ({len(runs) - len(meshes)} runs never saw every handshake)")


def _with_mesh(runs: list[NetnsRun]) -> list[tuple[NetnsRun, float]]:
    return [(r, r.mesh) for r in runs if r.mesh is not None]


def vm_first_boot(stack: str) -> Mapping[str, float] | str:
    """Per-node first-boot-to-mesh seconds from lab.vm, or why there are none."""
    try:
        vm: ModuleType = importlib.import_module("lab.vm")
    except ImportError as e:
        return f"lab.vm is not available ({e})"
    tmp = Path(tempfile.mkdtemp(prefix="wgmesh-bench-vm-"))
    try:
        netns.render(stack, tmp / "render")
        if hasattr(vm, "first_boot_seconds"):
            return dict(vm.first_boot_seconds(tmp / "render"))
        if all(hasattr(vm, f) for f in ("start", "wait_for_reports", "timings", "down")):
            lab = vm.start(tmp / "render")
            try:
                reports, _ = vm.wait_for_reports(lab, VM_TIMEOUT)
                return dict(vm.timings(reports))
            finally:
                vm.down()
        return "lab.vm offers no timing function"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lab", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--stack", default="lab")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--vm", action="store_true", help="also boot the VMs (several minutes)")
    args = parser.parse_args(argv)
    reason = netns.unavailable_reason()
    if reason:
        print(f"netns lab: not measured: {reason}")
    else:
        report_netns(args.stack, [netns_run(args.stack) for _ in range(args.runs)])
    if not args.vm:
        print("VM lab: not measured (pass --vm; it takes minutes)")
        return 0
    seconds = vm_first_boot(args.stack)
    if isinstance(seconds, str):
        print(f"VM lab: not measured: {seconds}")
    elif not seconds:
        print("VM lab: no node reported its mesh up")
    else:
        print("VM lab, first boot to mesh (guest uptime):")
        for node, s in sorted(seconds.items()):
            print(f"  {node:20} {s:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
