"""The MTU throughput comparison `make bench` prints, checked for behaviour (never for speed).

On the lab-mtu stack (1460 underlay): while the lab internet drops fragments, 1420 moves no
TCP payload and the planned 1380 does; while fragments are allowed both move data and the
fragments are counted as forwarded; afterwards the internet drops fragments again and wg0
is back at the planned MTU. Needs root (skips with the reason outside CI, fails under
CI=true). Own namespace prefix and lab dir; nothing may be left behind.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Figure

from lab.checks.mtu import WRONG_MTU, format_throughput, throughput_comparison, trial
from lab.core.mounts import mounts_under
from lab.core.proc import NETNS_DIR, run_in
from lab.netns import driver as netns
from lab.netns.layout import Layout
from tools.render import main as render_main

pytestmark = pytest.mark.lab
LAYOUT = Layout(root=Path("/tmp/wgmesh-lab/test-mtu-throughput"), prefix="wgm-q-")


def our_namespaces() -> list[str]:
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(LAYOUT.prefix))


@pytest.fixture
def lab_mtu(tmp_path: Path) -> Iterator[netns.BringUp]:
    reason = netns.unavailable_reason()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and the netns lab cannot run: {reason}")
        pytest.skip(reason)
    assert our_namespaces() == [], "a previous run left a lab behind"
    out = tmp_path / "render"
    assert render_main(["--stack", "lab-mtu", "--out", str(out)]) == 0
    result = netns.bring_up(out, layout=LAYOUT)
    try:
        yield result
    finally:
        assert netns.down(layout=LAYOUT) == 0
        assert our_namespaces() == []
        assert mounts_under(LAYOUT.root) == []


def test_both_mtus_on_both_paths_and_the_lab_is_restored(lab_mtu: netns.BringUp, figure: Figure) -> None:
    lab = lab_mtu.lab
    c = throughput_comparison(lab, seconds=1.0)
    figure(format_throughput(c))
    planned, wrong = c.dropped
    assert (planned.wg_mtu, wrong.wg_mtu) == (1380, WRONG_MTU)
    assert planned.tcp.received > 100_000 and planned.fragments_dropped == 0
    assert wrong.tcp.received < 64 * 1024 and wrong.fragments_dropped > 0
    planned_ok, wrong_ok = c.allowed
    assert planned_ok.tcp.received > 100_000
    assert wrong_ok.tcp.received > 100_000 and wrong_ok.fragments_dropped > 0  # forwarded, counted
    ratios = c.ratios()
    assert ratios["fragments allowed"] is not None and ratios["fragments allowed"] > 0
    # Restored: wg0 is at the planned MTU and the internet drops fragments again.
    for node in lab.nodes[:2]:
        assert run_in(lab.node(node.name), "cat", "/sys/class/net/wg0/mtu").stdout.strip() == "1380"
    again = trial(lab, lab.nodes[0], lab.nodes[1], WRONG_MTU, 1.0)
    assert again.tcp.received < 64 * 1024 and again.fragments_dropped > 0
