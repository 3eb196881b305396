"""The MTU throughput comparison `make bench` prints, checked for behaviour (never for speed).

On the lab-mtu stack (1460 underlay): while the lab internet drops fragments, 1420 moves no
TCP payload and the planned 1380 does; while fragments are allowed both move data and the
fragments are counted as forwarded; afterwards the internet drops fragments again and wg0
is back at the planned MTU. Needs root (skips with the reason outside CI, fails under
CI=true). Own namespace prefix and lab dir; nothing may be left behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Figure
from labtest import assert_all_removed, render_stack, require_clean, require_netns_lab

from lab.checks.mtu import WRONG_MTU, format_throughput, throughput_comparison, trial
from lab.core.proc import run_in
from lab.netns import driver
from lab.netns.layout import Layout

pytestmark = pytest.mark.lab
LAYOUT = Layout(root=Path("/tmp/wgmesh-lab/test-mtu-throughput"), prefix="wgm-q-")


@pytest.fixture
def lab_mtu(tmp_path: Path) -> Iterator[driver.BringUp]:
    require_netns_lab()
    require_clean(LAYOUT)
    out = render_stack("lab-mtu", tmp_path / "render")
    result = driver.bring_up(out, layout=LAYOUT)
    try:
        yield result
    finally:
        assert driver.down(layout=LAYOUT) == 0
        assert_all_removed(LAYOUT, [])


def test_both_mtus_on_both_paths_and_the_lab_is_restored(lab_mtu: driver.BringUp, figure: Figure) -> None:
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
