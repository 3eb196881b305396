"""How long the lab takes to bring a rendered mesh up, and what the planned MTU buys (figures only).

    python -m bench.lab [--nodes 5 10 20] [--stack lab] [--runs 1] [--no-mtu] [--vm]

netns: for full meshes of --nodes lab nodes (generated stacks; or --stack), seconds from the
start of bring-up until wg0 is up on every node and until every node pair has shaken hands,
render excluded and included (median of --runs), and tear-down. MTU: the lab-mtu stack
(1460 underlay), TCP throughput with the planned MTU vs 1420, fragments dropped and allowed.
VM (--vm, minutes): first-boot-to-mesh seconds per node from lab.vm.driver, when it offers a way to
measure them; without lab.vm.driver the figure is reported as not available.
Runs under its own namespace prefix and lab dir, so a running `make lab` is not disturbed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import yaml

from lab.checks.mtu import format_throughput, throughput_comparison
from lab.netns import driver
from lab.netns.layout import Layout
from lab.netns.teardown import tear_down

BENCH_LAYOUT = Layout(root=Path("/tmp/wgmesh-lab/bench-netns"), prefix="wgm-b-")
VM_TIMEOUT = 900.0
NODE_COUNTS = (5, 10, 20)
HANDSHAKE_TIMEOUT = 120.0  # 20 nodes are 190 pairs of wireguard-go on two cores


@dataclass(frozen=True)
class NetnsRun:
    render: float
    wg_up: float
    mesh: float | None
    down: float


def lab_stack(n: int, directory: Path) -> Path:
    """A stack file for an n-node full mesh with PSKs on the lab underlay."""
    nodes = [{"name": f"lab-{i + 1}", "cloud": "lab", "publicIp": f"198.51.100.{i + 1}"} for i in range(n)]
    mesh = {"cidr": "10.77.0.0/24", "topology": "mesh", "keepalive": 25, "presharedKeys": True}
    path = directory / f"Pulumi.bench-lab{n}.yaml"
    path.write_text(yaml.safe_dump({"config": {"wgmesh:mesh": mesh, "wgmesh:nodes": nodes}}, sort_keys=False))
    return path


def netns_run(stack: str) -> NetnsRun:
    tmp = Path(tempfile.mkdtemp(prefix="wgmesh-bench-"))
    try:
        t0 = time.monotonic()
        with contextlib.redirect_stdout(io.StringIO()):
            driver.render(stack, tmp / "render")
        rendered = time.monotonic() - t0
        result = driver.bring_up(tmp / "render", layout=BENCH_LAYOUT, handshake_timeout=HANDSHAKE_TIMEOUT)
        t1 = time.monotonic()
        tear_down(BENCH_LAYOUT)
        return NetnsRun(rendered, result.wg_up_seconds, result.mesh_seconds, time.monotonic() - t1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def mtu_throughput(seconds: float) -> str:
    """The lab-mtu stack up, both MTUs on both kinds of path, down again: the formatted figures."""
    tmp = Path(tempfile.mkdtemp(prefix="wgmesh-bench-mtu-"))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            driver.render("lab-mtu", tmp / "render")
        result = driver.bring_up(tmp / "render", layout=BENCH_LAYOUT)
        try:
            return format_throughput(throughput_comparison(result.lab, seconds=seconds))
        finally:
            tear_down(BENCH_LAYOUT)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _median(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.2f} s" if values else "n/a"


def report_netns(label: str, runs: list[NetnsRun]) -> None:
    """One table row: render, wg0 up, every handshake, render + handshakes, tear-down (medians)."""
    meshes = [r.mesh for r in runs if r.mesh is not None]
    cells = [
        _median([r.render for r in runs]),
        _median([r.wg_up for r in runs]),
        _median(meshes),
        _median([r.render + m for r, m in _with_mesh(runs)]),
        _median([r.down for r in runs]),
    ]
    missing = f"  ({len(runs) - len(meshes)} of {len(runs)} runs never saw every handshake)"
    print(
        f"{label:>14} " + " ".join(f"{c:>12}" for c in cells) + (missing if len(meshes) < len(runs) else "")
    )


NETNS_HEADER = (
    f"{'netns lab':>14} {'render':>12} {'wg0 up':>12} {'handshakes':>12} {'render+hs':>12} {'tear-down':>12}"
)


def _with_mesh(runs: list[NetnsRun]) -> list[tuple[NetnsRun, float]]:
    return [(r, r.mesh) for r in runs if r.mesh is not None]


def vm_first_boot(stack: str) -> Mapping[str, float] | str:
    """Per-node first-boot-to-mesh seconds from lab.vm.driver, or why there are none."""
    try:
        vm: ModuleType = importlib.import_module("lab.vm.driver")
    except ImportError as e:
        return f"lab.vm.driver is not available ({e})"
    tmp = Path(tempfile.mkdtemp(prefix="wgmesh-bench-vm-"))
    try:
        driver.render(stack, tmp / "render")
        if hasattr(vm, "first_boot_seconds"):
            return dict(vm.first_boot_seconds(tmp / "render"))
        if all(hasattr(vm, f) for f in ("start", "wait_for_reports", "timings", "down")):
            lab = vm.start(tmp / "render")
            try:
                reports, _ = vm.wait_for_reports(lab, VM_TIMEOUT)
                return dict(vm.timings(reports))
            finally:
                vm.down()
        return "lab.vm.driver offers no timing function"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lab", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="*", default=list(NODE_COUNTS))
    parser.add_argument("--stack", help="time this stack instead of generated full meshes")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--mtu-seconds", type=float, default=3.0, help="TCP seconds per MTU trial")
    parser.add_argument("--no-mtu", action="store_true", help="skip the MTU throughput comparison")
    parser.add_argument("--vm", action="store_true", help="also boot the VMs (several minutes)")
    args = parser.parse_args(argv)
    reason = driver.unavailable_reason()
    if reason:
        print(f"netns lab: not measured: {reason}")
    else:
        print(
            f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; seconds, median of {args.runs}"
        )
        print(NETNS_HEADER)
        if args.stack:
            report_netns(args.stack, [netns_run(args.stack) for _ in range(args.runs)])
        with tempfile.TemporaryDirectory(prefix="wgmesh-bench-stacks-") as stacks:
            for n in [] if args.stack else args.nodes:
                stack = str(lab_stack(n, Path(stacks)))
                report_netns(f"{n} nodes", [netns_run(stack) for _ in range(args.runs)])
        if not args.no_mtu:
            print(mtu_throughput(args.mtu_seconds))
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
