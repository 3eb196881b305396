"""Day-2 changes in the netns lab with the live-update script, under a continuous ping.

Two nodes ping each other every 20 ms (both directions) while a third node with a routed
subnet is added, its key rotated, its wireguard-go killed and the node removed, each change
applied by the exact commands a live update runs (cloudinit.sync), in Pulumi's order: every
node's peers-only apply (`<node>-peers`), then every full apply (`<node>-sync`). After the
add and the rotation each node runs the health check Pulumi runs next (it must pass with
its table); after the kill it must fail naming the dead node. Asserts: 0 packets lost between
the two, the subnet's routes appear and disappear on the others, every wg0's peers match its
rendered wg0.conf after each step, and nothing is left behind. The rotated node's own gap
(its peers know only its new key until it switches) is measured and printed as a figure.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import Figure
from labtest import require_netns_lab

from cloudinit.bundle import encode_bundle, parse_bundle
from cloudinit.host import INTO_MESH_DROP, NFT_PATH, SYSCTL_PATH
from cloudinit.sync import apply_command
from lab.checks import health as checks
from lab.core.manifest import load_mesh
from lab.core.mounts import mounts_under
from lab.core.network import namespace_inode
from lab.core.probes import allowed_ips, ping
from lab.core.proc import NETNS_DIR, run_in
from lab.core.processes import alive, processes_in
from lab.core.state import ProcessRecord, load_state
from lab.core.wgconf import conf_peers, rendered_wg_conf
from lab.netns import driver as netns
from lab.netns.day2 import (
    Applied,
    Health,
    PingLog,
    Update,
    add_node,
    apply_update,
    continuous_ping,
    health,
    kill_wireguard,
    remove_node,
    rendered_bundle,
    wg0_routes,
)
from lab.netns.layout import Layout
from lab.netns.running import NetnsLab
from lab.netns.teardown import tear_down
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
    if load_state(env.layout.state_file) is not None or our_namespaces():
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
    for a in applied:
        fields = " ".join(f"{k}={v}" for k, v in a.summary.items() if k != "interface")
        print(f"day2 {step}: {a.node}: {fields} (command {a.seconds:.2f} s, returned at {a.ended:.3f})")


def show_update(step: str, update: Update) -> None:
    show(f"{step} peers", update.peers)
    show(f"{step} sync", update.sync)


def summaries(applied: list[Applied], *fields: str) -> dict[str, tuple[str, ...]]:
    return {a.node: tuple(a.summary.get(f, "") for f in fields) for a in applied}


CHANGES = ("peers_added", "peers_changed", "peers_removed", "routes_added", "routes_removed")


def check_health(lab: NetnsLab, stack: str, render_dir: Path, step: str) -> None:
    """Every node's health check passes with an ok row per peer (all at once, as Pulumi runs them)."""
    stack_file = STACKS / f"Pulumi.day2-{stack}.yaml"
    with ThreadPoolExecutor(max_workers=len(lab.nodes)) as pool:
        results = list(pool.map(lambda n: (n, health(lab, stack_file, render_dir, n.name)), lab.nodes))
    for node, h in results:
        print(f"day2 {step} health {node.name}: exit {h.returncode} in {h.seconds:.1f} s: {h.verdict}")
        peers = sorted(n.name for n in lab.nodes if n.name != node.name)
        assert h.returncode == 0, f"{node.name}: {h.verdict} {h.rows}"
        assert h.verdict == f"wgmesh-health: {node.name}: ok, {len(peers)} peers"
        assert sorted(h.rows) == peers
        for peer, row in h.rows.items():
            assert row.split()[-1] == "ok" and " ok " in row, f"{node.name} -> {peer}: {row}"
            assert str(lab.mesh.node(peer).address) in row.split()


def outage(p: PingLog) -> str:
    first, last = p.longest_silence()
    return f"{p.lost} lost of {p.sent}, no reply for {last - first:.2f} s ({first:.3f} to {last:.3f})"


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
        c_addr = str(meshes[1].node(C).address)
        with continuous_ping(lab.node(A), b_addr) as ab, continuous_ping(lab.node(B), a_addr) as ba:
            time.sleep(0.5)

            # 1. add day2-c (routed subnet): boot it, then the update (peers phase, then sync).
            lab = add_node(layout, r_three, C)
            day2.remember_processes()
            update = apply_update(lab, r_three, [A, B, C])
            show_update("add", update)
            assert summaries(update.peers, "action", *CHANGES) == {
                A: ("peers", "1", "0", "0", "1", "0"),  # the pinging peer is never touched
                B: ("peers", "1", "0", "0", "1", "0"),
                C: ("peers", "0", "0", "0", "0", "0"),  # it booted with this conf
            }
            assert summaries(update.sync, "action", *CHANGES) == {
                n: ("sync", "0", "0", "0", "0", "0") for n in (A, B, C)
            }  # the peers phase did it all; the full apply installs the file
            assert checks.wait_for_handshakes(lab, 20) is not None, "day2-c never shook hands"
            for node in (A, B):
                assert C_SUBNET in wg0_routes(lab.node(node))
            assert_peers_match(lab, r_three)
            assert ping(lab.node(A), C_LAN_HOST).ok, "the subnet behind day2-c is not reachable"
            check_health(lab, "three", r_three, "add")

            # 2. rotate day2-c's key: the peers learn the new public key first, then it switches.
            with continuous_ping(lab.node(A), c_addr) as ac, continuous_ping(lab.node(C), a_addr) as ca:
                time.sleep(0.5)
                update = apply_update(lab, r_rotated, [A, B, C])
                show_update("rotate", update)
                lab = NetnsLab(layout, meshes[2])
                waited = checks.wait_for_handshakes(lab, 20)
                assert waited is not None, "no handshake with day2-c's new key"
                time.sleep(0.5)
            assert summaries(update.peers, "action", "held", *CHANGES) == {
                A: ("peers", "", "1", "0", "1", "0", "0"),  # C's new key added, its old one removed
                B: ("peers", "", "1", "0", "1", "0", "0"),
                C: ("peers", "private-key", "0", "2", "0", "0", "0"),  # new PSKs; its own key held
            }
            assert summaries(update.sync, "action", "reason") == {
                A: ("sync", ""),
                B: ("sync", ""),
                C: ("restart", "private-key"),  # the switch, after every peer learned the key
            }
            c_switch = update.of(C)[1]
            assert c_switch.started >= update.peers_learned
            day2.remember_processes()
            figure(f"day2 rotate: every pair shook hands with the new key {waited:.1f} s after the switch")
            # From the first peer that dropped day2-c's old key to day2-c running its new one.
            learned = min(a.ended for a in update.peers if a.node != C)
            figure(
                f"day2 rotate, day2-c's own gap: {c_switch.ended - learned:.2f} s from the first peer's "
                f"peers-only apply returning to its switch (its restart took {c_switch.seconds:.2f} s)"
            )
            for name, p in (("a->c", ac), ("c->a", ca)):
                print(f"day2 rotate ping {name}: {p.summary}; missing {p.missing()}")
                figure(f"day2 rotate, 20 ms ping {name} (the rotated node): {outage(p)}")
                assert p.received > 20, f"{name}: no traffic through the rotation"
                last_reply = max(p.reply_times.values())
                assert last_reply > c_switch.ended, f"{name}: no reply after day2-c switched its key"
            assert_peers_match(lab, r_rotated)
            check_health(lab, "rotated", r_rotated, "rotate")

            # Fault: day2-c crashes (wireguard-go killed); the other two keep pinging.
            pid = kill_wireguard(layout, C)
            print(f"day2 fault: at {time.time():.3f}")
            time.sleep(1.0)
            assert not ping(lab.node(A), c_addr, count=1, deadline=1).ok
            print(f"day2 fault: killed day2-c's wireguard-go (pid {pid})")
            h: Health = health(lab, STACKS / "Pulumi.day2-rotated.yaml", r_rotated, A, wait=5)
            print(f"day2 fault health {A}: exit {h.returncode} in {h.seconds:.1f} s: {h.verdict}")
            assert h.returncode != 0
            assert h.verdict.startswith(f"wgmesh-health: {A}: missing: {C} (no 1420-byte ping to {c_addr}")
            assert B not in h.verdict and h.rows[B].split()[-1] == "ok" and "FAIL" in h.rows[C]

            # 3. remove day2-c: the update without it, then take its namespace away.
            update = apply_update(lab, r_end, [A, B])
            show_update("remove", update)
            assert summaries(update.peers, "action", *CHANGES) == {
                n: ("peers", "0", "0", "1", "0", "1") for n in (A, B)
            }
            assert summaries(update.sync, "action", *CHANGES) == {
                n: ("sync", "0", "0", "0", "0", "0") for n in (A, B)
            }
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


def nft_table(lab: NetnsLab, node: str) -> str:
    return run_in(lab.node(node), "nft", "list", "table", "inet", "wgmesh").stdout


def read_in(lab: NetnsLab, node: str, path: str) -> str:
    return run_in(lab.node(node), "cat", path).stdout.strip()


def bundle_with_bad_sysctl(render_dir: Path, node: str) -> str:
    """The node's bundle whose sysctl file sets a key no kernel has: it passes the checks, fails to load."""
    settings, files = parse_bundle(rendered_bundle(render_dir, node))
    broken = [
        dataclasses.replace(f, content=f.content + "net.ipv4.wgmesh_no_such_key = 1\n")
        if f.part == "sysctl"
        else f
        for f in files
    ]
    users = [u for u in settings["users"].split(",") if u]
    return encode_bundle(broken, ra_guard=settings["ra-guard"] == "1", users=users)


def test_gateway_masquerade_and_cidr6_reach_a_running_node_and_a_failure_rolls_back(
    day2: Day2Lab, tmp_path: Path, figure: Figure
) -> None:
    """Defect: day-2 `gateway`, `masquerade` and `cidr6` changed cloud flags, never the host's rules.

    day2-b becomes a gateway masquerading a subnet while a and b ping each other: its nft table
    changes, nothing else is reloaded, no packet is lost. A broken bundle (a sysctl key that
    cannot load) then puts the previous table and files back. Adding cidr6 last turns IPv6
    forwarding on in both nodes' namespaces (wg0 restarts: its Address changed).
    """
    layout = day2.layout
    keys = tmp_path / "keys.json"
    r_two = render(tmp_path, "two", keys, "0-two")
    r_gw = render(tmp_path, "gateway", keys, "1-gateway")
    r_gw6 = render(tmp_path, "gateway6", keys, "2-gateway6")
    up = netns.bring_up(r_two, layout=layout, handshake_timeout=20)
    try:
        assert up.mesh_seconds is not None, "the two nodes never shook hands"
        lab = up.lab
        day2.remember_processes()
        assert INTO_MESH_DROP not in nft_table(lab, B) and "masquerade" not in nft_table(lab, B)
        a_addr, b_addr = str(lab.mesh.node(A).address), str(lab.mesh.node(B).address)
        with continuous_ping(lab.node(A), b_addr) as ab, continuous_ping(lab.node(B), a_addr) as ba:
            time.sleep(0.5)
            update = apply_update(lab, r_gw, [A, B])
            show_update("gateway", update)
            time.sleep(0.5)
        assert summaries(update.sync, "action", "host") == {A: ("sync", "-"), B: ("sync", "nft")}
        table = nft_table(lab, B)
        # As `nft list` prints them (a one-element set loses its braces).
        assert INTO_MESH_DROP in table and 'oifname != "wg0" ip daddr != 10.0.79.0/24 masquerade' in table
        assert 'iifname "wg0" ip daddr 10.0.79.0/24 masquerade' in table
        assert INTO_MESH_DROP not in nft_table(lab, A)  # a's table untouched
        for name, p in (("a->b", ab), ("b->a", ba)):
            figure(f"day2 gateway+masquerade on a running node, 20 ms ping {name}: {p.lost} lost of {p.sent}")
            assert p.sent > 20 and p.lost == 0, f"{name}: {p.summary}"

        # A bundle that fails half way: the new table was loaded, the sysctl file fails -> all back.
        before = {p: read_in(lab, B, p) for p in (NFT_PATH, SYSCTL_PATH)}
        proc = run_in(
            lab.node(B),
            "sh",
            "-c",
            apply_command(sudo=False),
            stdin_text=bundle_with_bad_sysctl(r_gw6, B),
            check=False,
            timeout=60,
        )
        print(f"day2 rollback: exit {proc.returncode}: {proc.stderr.strip()}")
        assert proc.returncode == 1 and "the previous host files are back" in proc.stderr
        assert {p: read_in(lab, B, p) for p in (NFT_PATH, SYSCTL_PATH)} == before
        assert nft_table(lab, B) == table  # the previous table is loaded again
        assert read_in(lab, B, "/proc/sys/net/ipv6/conf/all/forwarding") == "0"

        update = apply_update(lab, r_gw6, [A, B])
        show_update("cidr6", update)
        assert {a.node: (a.summary["action"], a.summary["reason"]) for a in update.sync} == {
            A: ("restart", "address"),
            B: ("restart", "address"),
        }
        assert {a.node: "sysctl" in a.summary["host"].split(",") for a in update.sync} == {A: True, B: True}
        for node in (A, B):
            assert read_in(lab, node, "/proc/sys/net/ipv6/conf/all/forwarding") == "1", node
        assert checks.wait_for_handshakes(lab, 20) is not None, "no handshake after the cidr6 restart"
        lab = NetnsLab(layout, load_mesh(r_gw6))
        assert ping(lab.node(A), str(lab.mesh.node(B).address6)).ok, "no IPv6 ping over the new overlay"
    finally:
        tear_down(layout)
