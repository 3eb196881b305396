"""Day-2 changes in the netns lab with the live-update script, under a continuous ping.

Two nodes ping each other every 20 ms (both directions) while a third node with a routed
subnet is added, its key rotated, its wireguard-go killed and the node removed, each change
applied by the exact command a live update runs (cloudinit.sync). Asserts: 0 packets lost
between the two, the subnet's routes appear and disappear on the others, every wg0's peers
match its rendered wg0.conf after each step, and nothing is left behind.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import Figure
from labtest import require_netns_lab

from lab import checks, netns
from lab.day2 import (
    Applied,
    add_node,
    apply_render,
    conf_peers,
    continuous_ping,
    kill_wireguard,
    remove_node,
    rendered_wg_conf,
    wg0_routes,
)
from lab.manifest import load_mesh
from lab.probes import allowed_ips, ping
from lab.proc import NETNS_DIR
from lab.running import NetnsLab
from lab.state import Layout, ProcessRecord, load_state
from lab.teardown import alive, mounts_under, processes_in, tear_down
from lab.topology import namespace_inode
from tools.render import main as render_main

pytestmark = pytest.mark.lab
PREFIX = "wgm-d2-"
ROOT = Path("/tmp/wgmesh-lab/test-day2")
STACKS = Path(__file__).resolve().parent / "stacks"
A, B, C = "day2-a", "day2-b", "day2-c"
C_SUBNET, C_LAN_HOST = "10.0.78.0/24", "10.0.78.2"


def our_namespaces() -> list[str]:
    return (
        sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(PREFIX)) if NETNS_DIR.is_dir() else []
    )


@dataclass
class Day2Lab:
    """The test's lab layout and every process seen in its namespaces (checked gone at the end)."""

    layout: Layout
    seen: list[ProcessRecord] = field(default_factory=list)

    def remember_processes(self) -> None:
        self.seen += processes_in({i for n in our_namespaces() if (i := namespace_inode(n)) is not None})


@pytest.fixture
def day2() -> Iterator[Day2Lab]:
    require_netns_lab()
    env = Day2Lab(Layout(root=ROOT, prefix=PREFIX))
    if load_state(env.layout) is not None or our_namespaces():
        pytest.fail(f"a previous run left a day-2 lab behind: {our_namespaces()} {ROOT}")
    try:
        yield env
    finally:
        if env.layout.root.exists():
            netns.down(layout=env.layout)
        assert our_namespaces() == []
        assert mounts_under(env.layout.root) == []
        assert not env.layout.root.exists()
        assert env.seen, "the test recorded no process"
        assert [p for p in env.seen if alive(p)] == []


def render(tmp: Path, stack: str, keys: Path, out: str) -> Path:
    dest = tmp / out
    assert (
        render_main(
            ["--stack", str(STACKS / f"Pulumi.day2-{stack}.yaml"), "--out", str(dest), "--keys", str(keys)]
        )
        == 0
    )
    return dest


def assert_peers_match(lab: NetnsLab, render_dir: Path) -> None:
    for node in lab.nodes:
        live = {k: set(v) for k, v in allowed_ips(lab.node(node.name)).items()}
        assert live == conf_peers(rendered_wg_conf(render_dir, node.name)), (
            f"{node.name}: wg0 peers differ from its conf"
        )


def show(step: str, applied: list[Applied]) -> None:
    print(f"day2 {step}: applied by {time.time():.3f}")
    for a in applied:
        fields = " ".join(f"{k}={v}" for k, v in a.summary.items() if k != "interface")
        print(f"day2 {step}: {a.node}: {fields} (command {a.seconds:.2f} s)")


def test_add_rotate_kill_remove_a_node_while_two_others_ping(
    day2: Day2Lab, tmp_path: Path, figure: Figure
) -> None:
    layout = day2.layout
    keys = tmp_path / "keys.json"
    r_two = render(tmp_path, "two", keys, "0-two")
    r_three = render(tmp_path, "three", keys, "1-three")
    r_rotated = render(tmp_path, "rotated", keys, "2-rotated")
    r_end = render(tmp_path, "two", keys, "3-two")
    meshes = [load_mesh(r) for r in (r_two, r_three, r_rotated, r_end)]
    for name in (A, B):  # the keys file keeps the two pinging nodes' keys through every render
        assert len({m.node(name).public_key for m in meshes}) == 1
    assert meshes[1].node(C).public_key != meshes[2].node(C).public_key  # keyEpoch 1: a new key

    up = netns.bring_up(r_two, layout=layout, handshake_timeout=20)
    try:
        assert up.mesh_seconds is not None, "the two nodes never shook hands"
        lab = up.lab
        day2.remember_processes()
        a_addr, b_addr = str(lab.mesh.node(A).address), str(lab.mesh.node(B).address)
        with continuous_ping(lab.node(A), b_addr) as ab, continuous_ping(lab.node(B), a_addr) as ba:
            time.sleep(0.5)

            # 1. add day2-c (routed subnet): boot it, then apply the new confs on the old nodes.
            lab = add_node(layout, r_three, C)
            day2.remember_processes()
            applied = apply_render(lab, r_three, [A, B])
            show("add", applied)
            for a in applied:
                assert a.summary["action"] == "sync"
                assert (a.summary["peers_added"], a.summary["routes_added"]) == ("1", "1")
                assert a.summary["peers_changed"] == "0"  # the pinging peer is never touched
            assert checks.wait_for_handshakes(lab, 20) is not None, "day2-c never shook hands"
            for node in (A, B):
                assert C_SUBNET in wg0_routes(lab.node(node))
            assert_peers_match(lab, r_three)
            assert ping(lab.node(A), C_LAN_HOST).ok, "the subnet behind day2-c is not reachable"

            # 2. rotate day2-c's key: the peers learn the new public key first, then it switches.
            applied = apply_render(lab, r_rotated, [A, B])
            applied += apply_render(lab, r_rotated, [C])
            show("rotate", applied)
            for a in applied[:2]:
                assert a.summary["action"] == "sync"
                assert (a.summary["peers_added"], a.summary["peers_removed"]) == ("1", "1")
                assert a.summary["peers_changed"] == "0"
                assert (a.summary["routes_added"], a.summary["routes_removed"]) == ("0", "0")
            assert (applied[2].summary["action"], applied[2].summary["reason"]) == ("restart", "private-key")
            day2.remember_processes()
            lab = NetnsLab(layout, meshes[2])
            waited = checks.wait_for_handshakes(lab, 20)
            assert waited is not None, "no handshake with day2-c's new key"
            figure(f"day2 rotate: every pair shook hands with the new key {waited:.1f} s after the switch")
            assert_peers_match(lab, r_rotated)

            # Fault: day2-c crashes (wireguard-go killed); the other two keep pinging.
            pid = kill_wireguard(layout, C)
            print(f"day2 fault: at {time.time():.3f}")
            time.sleep(1.0)
            assert not ping(lab.node(A), str(lab.mesh.node(C).address), count=1, deadline=1).ok
            print(f"day2 fault: killed day2-c's wireguard-go (pid {pid})")

            # 3. remove day2-c: apply the confs without it, then take its namespace away.
            applied = apply_render(lab, r_end, [A, B])
            show("remove", applied)
            for a in applied:
                assert a.summary["action"] == "sync"
                assert (a.summary["peers_removed"], a.summary["routes_removed"]) == ("1", "1")
                assert a.summary["peers_changed"] == "0"
            lab = remove_node(layout, r_end, C)
            for node in (A, B):
                assert C_SUBNET not in wg0_routes(lab.node(node))
            assert_peers_match(lab, r_end)
            assert [n.name for n in lab.nodes] == [A, B]
            time.sleep(0.5)
        for name, p in (("a->b", ab), ("b->a", ba)):
            print(
                f"day2 ping {name}: {p.summary} -> {p.lost} lost among the first {max(p.replies, default=0)}"
            )
            for seq in p.missing():
                around = [p.reply_times.get(s) for s in (seq - 1, seq + 1)]
                print(f"day2 ping {name}: no reply to {seq} (neighbours' replies at {around})")
            assert p.sent > 100 and p.received > 100
            figure(f"day2 add+rotate+kill+remove, 20 ms ping {name}: {p.lost} lost of {p.sent}")
            assert p.lost == 0, f"{name}: {p.lost} packets lost ({p.summary})"
    finally:
        tear_down(layout)
