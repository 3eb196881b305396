"""Deployment patterns in the netns lab: hub and spoke, jumpbox, IPv6 overlay and endpoints.

Each stack (stacks/Pulumi.lab-hub.yaml, lab-jumpbox, lab-ipv6) boots once per test class and
must come out healthy with its pattern check passing. Then each pattern's key line is cut from
the RENDERED files before a fresh boot, and that pattern's check must fail while the rest of
the mesh still comes up: the check proves the line matters, not only that the stack works.

Needs root (skips with the reason outside CI, fails under CI=true). Own namespace prefix and
lab dir; after every lab nothing may be left: no namespaces, mounts, lab dir or processes.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from labtest import namespaces_with_prefix, require_netns_lab

from lab.checks import health as checks
from lab.checks import patterns as pattern_checks
from lab.checks.patterns import HUB_RELAY, IPV6, IPV6_ENDPOINTS, JUMPBOX
from lab.checks.report import format_report
from lab.core.manifest import load_mesh
from lab.core.mounts import mounts_under
from lab.core.probes import peer_endpoints, ping
from lab.core.proc import run_in
from lab.core.processes import alive
from lab.core.results import HealthReport
from lab.core.state import ProcessRecord, load_state
from lab.netns import driver as netns
from lab.netns.layout import Layout
from lab.netns.running import NetnsLab
from tools.render import main as render_main

pytestmark = pytest.mark.lab
PREFIX = "wgm-p-"
ROOT = Path("/tmp/wgmesh-lab/test-patterns")
LAYOUT = Layout(root=ROOT, prefix=PREFIX)


def our_namespaces() -> list[str]:
    return namespaces_with_prefix(PREFIX)


@dataclass
class Booted:
    lab: NetnsLab
    render_dir: Path
    mesh_seconds: float | None
    started: list[ProcessRecord]


def render(stack: str, out: Path) -> Path:
    assert render_main(["--stack", stack, "--out", str(out)]) == 0
    return out


def cut_line(render_dir: Path, node: str, line: str, replacement: str = "") -> None:
    """Remove (or replace) exactly one occurrence of `line` in the node's rendered user-data."""
    user_data = render_dir / node / "user-data"
    text = user_data.read_text()
    assert text.count(line) == 1, f"{node}/user-data: expected `{line}` once"
    user_data.write_text(text.replace(line, replacement))


@contextlib.contextmanager
def booted(render_dir: Path) -> Iterator[Booted]:
    """Boot a render under the test layout; afterwards assert nothing is left behind."""
    require_netns_lab()
    if load_state(LAYOUT.state_file) is not None or our_namespaces():
        pytest.fail(f"a previous test run left a lab behind: {our_namespaces()} {ROOT}")
    started: list[ProcessRecord] = []
    start = time.monotonic()
    try:
        up = netns.bring_up(render_dir, layout=LAYOUT, log=print)
        state = load_state(LAYOUT.state_file)
        assert state is not None
        started += state.processes
        print(f"bring-up {time.monotonic() - start:.1f} s (every expected handshake: {up.mesh_seconds})")
        try:
            yield Booted(up.lab, render_dir, up.mesh_seconds, started)
        finally:
            assert netns.down(layout=LAYOUT, log=print) == 0
    finally:
        if LAYOUT.root.exists():
            netns.down(layout=LAYOUT)
    assert our_namespaces() == []
    assert mounts_under(ROOT) == []
    assert not ROOT.exists()
    assert started and [p for p in started if alive(p)] == []


def healthy_report(lab: NetnsLab) -> HealthReport:
    report = checks.run_all(lab)
    print(format_report(report))
    for p in report.pairs:
        assert p.ok, p
    for c in report.checks:
        assert c.ok, f"{c.name}: {c.detail}"
    return report


def check(report: HealthReport, name: str) -> str:
    result = report.check(name)
    assert not result.skipped
    return result.detail


# ----------------------------------------------------------------------------- hub and spoke


@pytest.fixture(scope="class")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Booted]:
    with booted(render("lab-hub", tmp_path_factory.mktemp("hub") / "render")) as b:
        yield b


class TestHub:
    def test_spokes_reach_each_other_through_the_hub_only(self, hub: Booted) -> None:
        assert hub.mesh_seconds is not None
        report = healthy_report(hub.lab)
        assert len(report.pairs) == 6
        assert {(p.src, p.dst) for p in report.pairs if p.via == "lab-hub"} == {
            ("lab-s1", "lab-s2"),
            ("lab-s2", "lab-s1"),
        }
        detail = check(report, HUB_RELAY)
        assert "0 spoke<->spoke" in detail and "for spokes: none" in detail

    def test_a_spoke_holds_only_the_hub(self, hub: Booted) -> None:
        mesh = hub.lab.mesh
        assert mesh.topology == "hub"
        assert mesh.node_peers("lab-s1") == ("lab-hub",)
        assert sorted(mesh.node_peers("lab-hub")) == ["lab-s1", "lab-s2"]
        live = peer_endpoints(hub.lab.node("lab-s1"))
        hub_node = mesh.node("lab-hub")
        assert live == {hub_node.public_key: f"{hub_node.public_ip}:{hub_node.listen_port}"}


def test_hub_that_does_not_forward_fails_the_relay_check(tmp_path: Path) -> None:
    render_dir = render("lab-hub", tmp_path / "render")
    # Forwarding off explicitly: a new namespace inherits the host's ip_forward, so a deleted
    # line would prove nothing on a host that forwards (CI runners with Docker do).
    cut_line(render_dir, "lab-hub", "net.ipv4.ip_forward = 1", "net.ipv4.ip_forward = 0")
    with booted(render_dir) as b:
        assert b.mesh_seconds is not None  # the rest still boots: every direct pair shook hands
        assert run_in(b.lab.node("lab-hub"), "cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip() == "0"
        result = pattern_checks.check_hub_relay(b.lab)
        print(f"FAIL  {result.name}: {result.detail}")
        assert not result.ok
        assert "lost" in result.detail and "0 spoke<->spoke" in result.detail
        for spoke in ("lab-s1", "lab-s2"):  # the hub itself still answers both spokes
            assert ping(b.lab.node(spoke), b.lab.mesh.node("lab-hub").address, count=1).ok


# ----------------------------------------------------------------------------- jumpbox


@pytest.fixture(scope="class")
def jumpbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Booted]:
    with booted(render("lab-jumpbox", tmp_path_factory.mktemp("jumpbox") / "render")) as b:
        yield b


class TestJumpbox:
    def test_host_behind_the_jumpbox_sees_only_its_lan_address(self, jumpbox: Booted) -> None:
        assert jumpbox.mesh_seconds is not None
        report = healthy_report(jumpbox.lab)
        detail = check(report, f"{JUMPBOX} from lab-a")
        assert "sources seen there: 10.0.9.1 (want 10.0.9.1)" in detail
        assert "route back to" in detail and detail.endswith(": none")
        # The roaming laptop (behind its NAT box) reaches the same host through the mesh.
        from_client = check(report, f"{JUMPBOX} from client laptop")
        assert "sources seen there: 10.0.9.1 (want 10.0.9.1)" in from_client
        subnets = [c.name for c in report.checks if c.name.startswith("subnet ")]
        # Routes only behind lab-r: its host reaches the mesh; nothing starts behind lab-jump.
        assert "subnet 10.0.7.2 (behind lab-r) -> lab-a" in subnets
        assert not [n for n in subnets if n.startswith("subnet 10.0.9.2")]

    def test_jumpbox_network_has_no_route_and_lan_without_masquerade_does(self, jumpbox: Booted) -> None:
        lans = {h.router: h for h in jumpbox.lab.lan_hosts()}
        assert run_in(lans["lab-jump"].place, "ip", "route", "show", "default").stdout.strip() == ""
        assert "via 10.0.7.1" in run_in(lans["lab-r"].place, "ip", "route", "show", "default").stdout
        assert jumpbox.lab.mesh.node("lab-jump").masquerade and not jumpbox.lab.mesh.node("lab-r").masquerade


def test_jumpbox_without_its_masquerade_rule_fails_the_jumpbox_check(tmp_path: Path) -> None:
    render_dir = render("lab-jumpbox", tmp_path / "render")
    cut_line(render_dir, "lab-jump", "iifname $WG ip daddr { 10.0.9.0/24 } masquerade\n")
    with booted(render_dir) as b:
        assert b.mesh_seconds is not None
        [result] = pattern_checks.check_jumpbox(b.lab)
        print(f"FAIL  {result.name}: {result.detail}")
        assert not result.ok
        assert "lost" in result.detail
        assert f"sources seen there: {b.lab.mesh.node('lab-a').address}" in result.detail  # unNATed
        assert all(p.ok for p in checks.check_pairs(b.lab))
        routed = [h for h in b.lab.lan_hosts() if h.router == "lab-r"]  # routes only: unaffected
        assert ping(b.lab.node("lab-a"), routed[0].address, count=1).ok


# ----------------------------------------------------------------------------- IPv6 overlay and endpoints


@pytest.fixture(scope="class")
def ipv6(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Booted]:
    with booted(render("lab-ipv6", tmp_path_factory.mktemp("ipv6") / "render")) as b:
        yield b


class TestIpv6:
    def test_every_pair_pings_over_ipv6_and_reaches_the_v6_subnet(self, ipv6: Booted) -> None:
        assert ipv6.mesh_seconds is not None
        report = healthy_report(ipv6.lab)
        v6 = [p for p in report.pairs if p.family == 6]
        assert len(v6) == 6 and all(":" in p.address for p in v6)
        assert {p.mtu for p in v6} == {1420}
        assert check(report, IPV6).startswith(
            "6/6 node pairs (ping6 and DF ping6 at 1420 bytes), 4 IPv6 subnet"
        )
        v6_subnets = [c for c in report.checks if c.name.startswith("subnet") and "fd00:7::2" in c.name]
        assert len(v6_subnets) == 4

    def test_nodes_handshake_over_ipv6_and_the_underlay_carries_it(self, ipv6: Booted) -> None:
        mesh = ipv6.lab.mesh
        assert mesh.endpoints == "ipv6"
        for node in mesh.nodes:
            live = peer_endpoints(ipv6.lab.node(node.name))
            want = {
                mesh.node(p).public_key: f"[{mesh.node(p).public_ip6}]:{mesh.node(p).listen_port}"
                for p in mesh.node_peers(node.name)
            }
            assert live == want, node.name  # `wg show wg0 endpoints`: every node peer on [v6]:port
        report = healthy_report(ipv6.lab)  # includes the underlay check: WireGuard only, v6 counted
        assert check(report, IPV6_ENDPOINTS).startswith(
            "6/6 node peers on [v6]:port with a handshake; 6/6 pings; underlay UDP between nodes: "
        )
        assert check(report, IPV6_ENDPOINTS).endswith(" IPv6, 0 IPv4")
        assert int(check(report, "underlay carries only WireGuard UDP").split()[0]) > 0
        shown = run_in(ipv6.lab.node("lab-a"), "ip", "-6", "addr", "show", "dev", "eth0").stdout
        assert f"{mesh.node('lab-a').public_ip6}/128" in shown and "fe80:" not in shown

    def test_wg0_holds_both_addresses(self, ipv6: Booted) -> None:
        node = ipv6.lab.mesh.node("lab-a")
        shown = run_in(ipv6.lab.node("lab-a"), "ip", "-6", "addr", "show", "dev", "wg0").stdout
        assert f"{node.address6}/64" in shown

    def test_syn_ack_from_the_v6_subnet_is_clamped_to_wg0(self, ipv6: Booted) -> None:
        """The lan host behind lab-c advertises 1440 (1500 - 60); lab-c clamps it to 1420 - 60."""
        result = checks.check_mss_clamp(ipv6.lab)
        print(f"{'ok' if result.ok else 'FAIL'}  {result.name}: {result.detail}")
        assert result.ok and not result.skipped, result.detail
        assert result.detail.startswith("IPv6 lab-a <- fd00:7::2 via lab-c: SYN-ACK mss [1360")
        assert "(limit 1360;" in result.detail


def test_node_without_its_v6_address_fails_the_ipv6_check(tmp_path: Path) -> None:
    render_dir = render("lab-ipv6", tmp_path / "render")
    nodes = {str(n["name"]): n for n in json.loads((render_dir / "mesh.json").read_text())["nodes"]}
    c = nodes["lab-c"]
    cut_line(
        render_dir,
        "lab-c",
        f"Address = {c['address']}/24, {c['address6']}/64",
        f"Address = {c['address']}/24",
    )
    with booted(render_dir) as b:
        assert b.mesh_seconds is not None
        pairs = checks.check_pairs(b.lab)
        result = pattern_checks.check_ipv6(b.lab, pairs, checks.check_subnets(b.lab))
        print(f"FAIL  {result.name}: {result.detail}")
        assert not result.ok
        failed = {(p.src, p.dst) for p in pairs if p.family == 6 and not p.ok}
        assert {("lab-a", "lab-c"), ("lab-b", "lab-c")} <= failed
        assert all("lab-c" in pair for pair in failed), failed
        assert all(p.ok for p in pairs if p.family == 4)


def test_pair_cut_back_to_ipv4_endpoints_fails_the_ipv6_endpoints_check(tmp_path: Path) -> None:
    """lab-a and lab-c dial each other's IPv4 instead (what a render ignoring `endpoints: ipv6`
    would write): the overlay still works, but the check sees IPv4 endpoints and IPv4 UDP."""
    render_dir = render("lab-ipv6", tmp_path / "render")
    nodes = {str(n["name"]): n for n in json.loads((render_dir / "mesh.json").read_text())["nodes"]}
    for me, peer in (("lab-a", "lab-c"), ("lab-c", "lab-a")):
        p = nodes[peer]
        v6, v4 = f"Endpoint = [{p['public_ip6']}]:51820", f"Endpoint = {p['public_ip']}:51820"
        cut_line(render_dir, me, v6, v4)
    with booted(render_dir) as b:
        assert b.mesh_seconds is not None
        assert all(p.ok for p in checks.check_pairs(b.lab))  # the tunnels work, over IPv4
        result = pattern_checks.check_ipv6_endpoints(b.lab)
        print(f"FAIL  {result.name}: {result.detail}")
        assert not result.ok
        assert result.detail.startswith("4/6 node peers on [v6]:port")
        assert f"lab-a -> lab-c: {nodes['lab-c']['public_ip']}:51820" in result.detail
        assert not result.detail.split("; ")[2].endswith(" 0 IPv4")


# ----------------------------------------------------------------------------- no root needed


def test_the_manifest_says_who_peers_with_whom_and_through_which_hub(tmp_path: Path) -> None:
    mesh = load_mesh(render("lab-hub", tmp_path / "render"))
    assert mesh.route_via("lab-s1", "lab-s2") == "lab-hub"
    assert mesh.route_via("lab-s1", "lab-hub") is None
    doc = json.loads((tmp_path / "render" / "mesh.json").read_text())
    for node in doc["nodes"]:
        del node["peers"]  # an older render: a full mesh is assumed
    (tmp_path / "render" / "mesh.json").write_text(json.dumps(doc))
    older = load_mesh(tmp_path / "render")
    assert older.node_peers("lab-s1") == ("lab-hub", "lab-s2")
    assert older.route_via("lab-s1", "lab-s2") is None


def test_underlay_udp_is_sorted_into_spoke_to_spoke_and_spoke_to_hub() -> None:
    lines = [
        "IP 198.51.100.2.51820 > 198.51.100.1.51820: UDP, length 128",
        "IP 198.51.100.1.51820 > 198.51.100.3.51820: UDP, length 128",
        "IP 198.51.100.3.51820 > 198.51.100.2.51820: UDP, length 32",
        "IP 198.51.100.1.51820 > 198.51.100.4.51820: UDP, length 32",
        "ARP, Request who-has 198.51.100.1",
    ]
    spokes = {"198.51.100.2", "198.51.100.3"}
    assert pattern_checks.count_underlay_udp(lines, spokes) == (1, 2)


def test_echo_request_sources_are_read_for_both_families() -> None:
    lines = [
        "IP 10.0.9.1 > 10.0.9.2: ICMP echo request, id 7, seq 1, length 64",
        "IP 10.0.9.2 > 10.0.9.1: ICMP echo reply, id 7, seq 1, length 64",
        "IP6 fd77:77::1 > fd00:7::2: ICMP6, echo request, id 9, seq 1, length 64",
    ]
    assert pattern_checks.echo_sources(lines) == {"10.0.9.1", "fd77:77::1"}


def test_ipv6_underlay_lines_are_wireguard_or_link_control_and_nothing_else_passes() -> None:
    endpoints = {"198.51.100.1": 51820, "2001:db8:51::1": 51820, "2001:db8:51::2": 51820}
    lines = [
        "IP6 2001:db8:51::1.51820 > 2001:db8:51::2.51820: UDP, length 148",
        "IP6 2001:db8:51::2.51820 > 2001:db8:51::1.51820: UDP, length 92",
        "IP6 2001:db8:51::1 > ff02::1:ff00:2: ICMP6, neighbor solicitation, who has 2001:db8:51::2",
        "IP6 2001:db8:51::2 > 2001:db8:51::1: ICMP6, neighbor advertisement, tgt is 2001:db8:51::2",
        "IP6 :: > ff02::16: HBH ICMP6, multicast listener report v2, 4 group record(s), length 88",
        "IP6 2001:db8:51::1.40000 > 2001:db8:51::2.51820: UDP, length 92",  # wrong source port
        "IP6 fd77:77::1 > fd77:77::2: ICMP6, echo request, id 1, seq 1, length 64",  # cleartext overlay
        "IP6 2001:db8:99::1 > ff02::1:ff00:2: ICMP6, neighbor solicitation, who has 2001:db8:51::2",
        "IP6 :: > ff02::1:ff00:2: ICMP6, neighbor solicitation, who has 2001:db8:51::2",
    ]
    wireguard, other = checks.classify_underlay(lines, endpoints)
    assert wireguard == 2
    assert other == lines[5:]  # a stranger's or an unspecified source's neighbour discovery is no node's
    v4_only = {"198.51.100.1": 51820, "198.51.100.2": 51820}
    assert checks.classify_underlay(lines[2:5], v4_only) == (0, lines[2:5])  # no IPv6 underlay: all leaks


def test_underlay_udp_between_nodes_is_counted_per_family() -> None:
    lines = [
        "IP6 2001:db8:51::1.51820 > 2001:db8:51::3.51820: UDP, length 128",
        "IP 198.51.100.1.51820 > 198.51.100.3.51820: UDP, length 128",
        "IP 203.0.113.5.4500 > 198.51.100.3.51820: UDP, length 128",  # a client: not node to node
    ]
    nodes = {"2001:db8:51::1", "2001:db8:51::3", "198.51.100.1", "198.51.100.3"}
    assert pattern_checks.underlay_udp_families(lines, nodes) == (1, 1)
