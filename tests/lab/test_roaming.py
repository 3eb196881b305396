"""Roaming clients in the netns lab: keepalive through NAT, a NAT port change, an internet gateway.

stacks/Pulumi.lab-roaming.yaml: a laptop behind a NAT box is reached by both nodes (its
keepalive announced it), and after its NAT box moves to new ports and forgets its UDP flows
the nodes follow it within keepalive + a grace, with nothing sent from the laptop's side.
stacks/Pulumi.lab-gateway.yaml: a full-tunnel laptop reaches the lab's internet host only
through the gateway node, which masquerades it; the laptop's underlay carries only WireGuard.

Each scenario also boots with its key line cut from the RENDERED files (PersistentKeepalive
from the client conf; the gateway's masquerade rule, or its drop of new traffic into wg0, from
its user-data) and its check must fail. The booting tests need root (skip with the reason
outside CI, fail under CI=true); the wire-parsing tests at the end need nothing. Own namespace
prefix and lab dir; after every boot nothing may be left: namespaces, mounts, lab dir, processes.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import Figure
from labtest import namespaces_with_prefix, require_netns_lab

from cloudinit.host import INTO_MESH_DROP
from lab.checks import clients as client_checks
from lab.checks import health as checks
from lab.checks.report import format_report
from lab.core.errors import LabError
from lab.core.manifest import load_mesh
from lab.core.mounts import mounts_under
from lab.core.probes import peer_endpoints, ping
from lab.core.proc import run_in
from lab.core.processes import alive
from lab.core.results import CheckResult
from lab.core.state import ProcessRecord, load_state
from lab.netns import clients
from lab.netns import driver as netns
from lab.netns.layout import Layout
from lab.netns.running import NetnsLab
from tools.render import main as render_main

PREFIX = "wgm-r-"
ROOT = Path("/tmp/wgmesh-lab/test-roaming")
LAYOUT = Layout(root=ROOT, prefix=PREFIX)
MASQUERADE_LINE = "iifname $WG oifname != $WG masquerade"


def our_namespaces() -> list[str]:
    return namespaces_with_prefix(PREFIX)


@dataclass
class Env:
    tmp: Path
    started: list[ProcessRecord] = field(default_factory=list)

    def render(self, stack: str) -> Path:
        out = self.tmp / f"render-{stack}"
        assert render_main(["--stack", stack, "--out", str(out)]) == 0
        return out

    def boot(self, render_dir: Path) -> NetnsLab:
        result = netns.bring_up(render_dir, layout=LAYOUT, log=print)
        state = load_state(LAYOUT.state_file)
        assert state is not None
        self.started += state.processes
        return result.lab


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    require_netns_lab()
    if load_state(LAYOUT.state_file) is not None or our_namespaces():
        pytest.fail(f"a previous run left a lab behind: {our_namespaces()} {ROOT}")
    host_forwarding = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    e = Env(tmp_path)
    try:
        yield e
    finally:
        if ROOT.exists():
            assert netns.down(layout=LAYOUT) == 0
    assert our_namespaces() == []
    assert mounts_under(ROOT) == []
    assert not ROOT.exists()
    assert [p for p in e.started if alive(p)] == []
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == host_forwarding


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {c.name: c for c in results}


def client_results(lab: NetnsLab) -> dict[str, CheckResult]:
    """Every client check by name, each printed (a mutation test shows what passed and what broke)."""
    results = by_name(client_checks.run_client_checks(lab))
    for c in results.values():
        print(f"{'ok ' if c.ok else 'BAD'} {c.name}: {c.detail}")
    return results


def cut_lines(path: Path, needle: str, expected: int) -> None:
    """Remove every line holding `needle` from a rendered file (it must hold `expected` of them)."""
    lines = path.read_text().splitlines(keepends=True)
    assert sum(needle in ln for ln in lines) == expected, f"{path}: expected {expected} x {needle!r}"
    path.write_text("".join(ln for ln in lines if needle not in ln))


# ----------------------------------------------------------------------------- roaming


ROAM = "client laptop roams: NAT port change"
INBOUND = ("lab-a -> client laptop (keepalive through NAT)", "lab-b -> client laptop (keepalive through NAT)")
OUTBOUND = ("client laptop -> lab-a", "client laptop -> lab-b")


@pytest.mark.lab
def test_roaming_client_is_reached_through_nat_and_followed_after_a_port_change(
    env: Env, figure: Figure
) -> None:
    lab = env.boot(env.render("lab-roaming"))
    try:
        s = clients.site(lab, "laptop")
        assert s.client.keepalive == 2 and s.client.peers == ("lab-a", "lab-b")
        report = checks.run_all(lab)
        print(format_report(report))
        assert report.ok, format_report(report)
        for name in (*INBOUND, *OUTBOUND, ROAM, "underlay carries only WireGuard UDP"):
            assert report.check(name).ok, name
        # The nodes followed the laptop into the other port range; run again: back to the first.
        ports = clients.nat_ports(s)
        for n in lab.nodes:
            endpoint = peer_endpoints(lab.node(n.name))[s.client.public_key]
            assert endpoint.startswith(f"{s.nat_ip}:")
            assert ports[0] <= int(endpoint.rsplit(":", 1)[1]) <= ports[1]
        again = client_checks.check_nat_port_change(lab, s)
        assert again.ok, again.detail
        figure(f"roaming: {again.detail}")
        assert clients.nat_ports(s) != ports
    finally:
        assert netns.down(layout=LAYOUT) == 0


@pytest.mark.lab
def test_roaming_without_persistent_keepalive_is_lost_after_the_nat_change(env: Env) -> None:
    render_dir = env.render("lab-roaming")
    cut_lines(render_dir / "clients" / "laptop.conf", "PersistentKeepalive", 2)
    lab = env.boot(render_dir)
    try:
        results = client_results(lab)
        for name in INBOUND:
            assert not results[name].ok, name  # nobody told the nodes where the laptop is
        for name in OUTBOUND:
            assert results[name].ok, name  # the laptop itself still dials out
        assert not results[ROAM].ok
        assert "no ping back" in results[ROAM].detail
    finally:
        assert netns.down(layout=LAYOUT) == 0


# ----------------------------------------------------------------------------- gateway


INTERNET = "client laptop -> internet host through lab-gw"
UNDERLAY = "client laptop's underlay carries only WireGuard UDP to lab-gw"
BYPASS = "client laptop's handshake stays out of its tunnel"
WAY_IN = "internet -> mesh through lab-gw refused"


@pytest.mark.lab
def test_full_tunnel_client_reaches_the_internet_only_through_the_gateway(env: Env) -> None:
    lab = env.boot(env.render("lab-gateway"))
    try:
        report = checks.run_all(lab)
        print(format_report(report))
        assert report.ok, format_report(report)
        for name in (INTERNET, UNDERLAY, BYPASS, ROAM, WAY_IN):
            assert report.check(name).ok, name
        assert "saw source(s) 198.51.100.1 " in report.check(INTERNET).detail
        assert " reached its uplink, 0 went into its wg0" in report.check(WAY_IN).detail
        # lab-b is not a peer of the laptop: the laptop reaches it through lab-gw (full tunnel).
        s = clients.site(lab, "laptop")
        assert s.client.peers == ("lab-gw",)
        assert ping(s.laptop, lab.mesh.node("lab-b").address).ok
        # The internet host also serves HTTP for people poking at `make lab STACK=lab-gateway`.
        url = f"http://{clients.INTERNET_HOST}/"
        fetch = f"import urllib.request as u; print(u.urlopen({url!r}, timeout=5).status)"
        assert run_in(s.laptop, sys.executable, "-c", fetch).stdout.strip() == "200"
        assert any(p.what.startswith("python") for p in env.started)  # recorded, so down stops it
    finally:
        assert netns.down(layout=LAYOUT) == 0


@pytest.mark.lab
def test_gateway_without_its_masquerade_rule_leaks_the_client_address(env: Env) -> None:
    render_dir = env.render("lab-gateway")
    cut_lines(render_dir / "lab-gw" / "user-data", MASQUERADE_LINE, 1)
    lab = env.boot(render_dir)
    try:
        results = client_results(lab)
        assert not results[INTERNET].ok
        laptop = lab.mesh.clients[0].address
        assert f"saw source(s) {laptop} " in results[INTERNET].detail
        for name in (UNDERLAY, BYPASS, ROAM):
            assert results[name].ok, name  # the tunnel itself is fine; only the NAT is gone

        # Without wg-quick's fwmark the laptop's own handshakes would follow 0.0.0.0/0 into the
        # tunnel: the bypass check must see no fresh handshake then.
        s = clients.site(lab, "laptop")
        run_in(s.laptop, "wg", "set", s.interface, "fwmark", "0")
        assert client_checks.fresh_handshake(s, lab.mesh.node("lab-gw")) is None
    finally:
        assert netns.down(layout=LAYOUT) == 0


@pytest.mark.lab
def test_gateway_without_its_drop_rule_forwards_the_internet_into_the_mesh(env: Env) -> None:
    render_dir = env.render("lab-gateway")
    cut_lines(render_dir / "lab-gw" / "user-data", INTO_MESH_DROP, 1)
    lab = env.boot(render_dir)
    try:
        results = client_results(lab)
        assert not results[WAY_IN].ok
        assert re.search(r": (\d+) reached its uplink, \1 went into its wg0$", results[WAY_IN].detail)
        for name in (INTERNET, UNDERLAY, BYPASS, ROAM):
            assert results[name].ok, name  # outbound is untouched: only the way in opened
    finally:
        assert netns.down(layout=LAYOUT) == 0


# ----------------------------------------------------------------------------- no root needed


def test_client_wire_classification() -> None:
    wire = [
        "IP 192.168.100.2.51000 > 198.51.100.1.51820: UDP, length 148",
        "IP 198.51.100.1.51820 > 192.168.100.2.51000: UDP, length 92",
        "IP 192.168.100.2.51000 > 198.51.100.2.51820: UDP, length 32",  # not the gateway
        "IP 192.168.100.2 > 198.51.100.250: ICMP echo request, id 1, seq 1, length 64",  # outside the tunnel
    ]
    wg, other = client_checks.foreign_underlay(wire, "192.168.100.2", "198.51.100.1", 51820)
    assert (wg, other) == (2, wire[2:])
    assert client_checks.sources(["IP 198.51.100.1.4242 > 198.51.100.250.8080: Flags [S]", *wire[3:]]) == {
        "198.51.100.1",
        "192.168.100.2",
    }
    assert client_checks.endpoint_port("198.51.100.101:20001") == 20001
    assert client_checks.endpoint_port("(none)") is None


def test_only_the_clients_wireguard_is_taken_off_the_node_underlay(tmp_path: Path) -> None:
    assert render_main(["--stack", "lab-roaming", "--out", str(tmp_path)]) == 0
    lab = NetnsLab(LAYOUT, load_mesh(tmp_path))
    lines = [
        "IP 198.51.100.101.20001 > 198.51.100.1.51820: UDP, length 32",  # the laptop, mapped port
        "IP 198.51.100.2.51820 > 198.51.100.101.40999: UDP, length 32",  # a node answering it
        "IP 198.51.100.101.51820 > 198.51.100.1.51820: UDP, length 32",  # not a mapped port
        "IP 198.51.100.101.20001 > 198.51.100.1.53: UDP, length 32",  # not WireGuard's port
        "IP 198.51.100.1.51820 > 198.51.100.2.51820: UDP, length 32",  # node to node: judged later
    ]
    assert client_checks.without_client_wireguard(lab, lines) == lines[2:]


def test_lab_refuses_client_wiring_it_cannot_build(tmp_path: Path) -> None:
    assert render_main(["--stack", "lab-roaming", "--out", str(tmp_path)]) == 0
    mesh = load_mesh(tmp_path)
    clash = dataclasses.replace(mesh.nodes[0], public_ip=ipaddress.IPv4Address("198.51.100.101"))
    with pytest.raises(LabError, match="NAT box"):
        clients.check_fits(LAYOUT, dataclasses.replace(mesh, nodes=(clash, *mesh.nodes[1:])))
    conf = tmp_path / "clients" / "laptop.conf"
    conf.write_text(conf.read_text().replace("MTU = ", "DNS = 10.77.0.1\nMTU = "))
    with pytest.raises(LabError, match="resolvconf"):
        clients.check_fits(LAYOUT, mesh)
