"""Roaming clients in the netns lab: keepalive through NAT, a NAT port change, an internet gateway.

stacks/Pulumi.lab-roaming.yaml: a laptop behind a NAT box is reached by both nodes (its
keepalive announced it), and after its NAT box moves to new ports and forgets its UDP flows
the nodes follow it within keepalive + a grace, with nothing sent from the laptop's side.
stacks/Pulumi.lab-gateway.yaml: a full-tunnel laptop reaches the lab's internet host only
through the gateway node, which masquerades it; the laptop's underlay carries only WireGuard.

Each scenario also boots with its key line cut from the RENDERED files (PersistentKeepalive
from the client conf; the gateway's masquerade rule from its user-data) and its check must
fail. Needs root (skips with the reason outside CI, fails under CI=true). Own namespace prefix
and lab dir; after every boot nothing may be left: namespaces, mounts, lab dir, processes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lab import checks, client_checks, clients, netns
from lab.probes import ping
from lab.proc import NETNS_DIR
from lab.report import format_report
from lab.results import CheckResult
from lab.running import NetnsLab
from lab.state import Layout, ProcessRecord, load_state
from lab.teardown import alive, mounts_under
from tools.render import main as render_main

pytestmark = pytest.mark.lab
PREFIX = "wgm-r-"
ROOT = Path("/tmp/wgmesh-lab/test-roaming")
LAYOUT = Layout(root=ROOT, prefix=PREFIX)
MASQUERADE_LINE = "iifname $WG oifname != $WG masquerade"


def require_netns_lab() -> None:
    reason = netns.unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and the netns lab cannot run: {reason}")
    pytest.skip(reason)


def our_namespaces() -> list[str]:
    return (
        sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(PREFIX)) if NETNS_DIR.is_dir() else []
    )


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
        state = load_state(LAYOUT)
        assert state is not None
        self.started += state.processes
        return result.lab


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    require_netns_lab()
    if load_state(LAYOUT) is not None or our_namespaces():
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


def cut_lines(path: Path, needle: str, expected: int) -> None:
    """Remove every line holding `needle` from a rendered file (it must hold `expected` of them)."""
    lines = path.read_text().splitlines(keepends=True)
    assert sum(needle in ln for ln in lines) == expected, f"{path}: expected {expected} x {needle!r}"
    path.write_text("".join(ln for ln in lines if needle not in ln))


# ----------------------------------------------------------------------------- roaming


ROAM = "client laptop roams: NAT port change"
INBOUND = ("lab-a -> client laptop (keepalive through NAT)", "lab-b -> client laptop (keepalive through NAT)")
OUTBOUND = ("client laptop -> lab-a", "client laptop -> lab-b")


def test_roaming_client_is_reached_through_nat_and_followed_after_a_port_change(env: Env) -> None:
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
            endpoint = client_checks.endpoints(lab.node(n.name))[s.client.public_key]
            assert endpoint.startswith(f"{s.nat_ip}:")
            assert ports[0] <= int(endpoint.rsplit(":", 1)[1]) <= ports[1]
        again = client_checks.check_nat_port_change(lab, s)
        assert again.ok, again.detail
        assert clients.nat_ports(s) != ports
    finally:
        assert netns.down(layout=LAYOUT) == 0


def test_roaming_without_persistent_keepalive_is_lost_after_the_nat_change(env: Env) -> None:
    render_dir = env.render("lab-roaming")
    cut_lines(render_dir / "clients" / "laptop.conf", "PersistentKeepalive", 2)
    lab = env.boot(render_dir)
    try:
        results = by_name(client_checks.run_client_checks(lab))
        for c in results.values():
            print(f"{'ok ' if c.ok else 'BAD'} {c.name}: {c.detail}")
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


def test_full_tunnel_client_reaches_the_internet_only_through_the_gateway(env: Env) -> None:
    lab = env.boot(env.render("lab-gateway"))
    try:
        report = checks.run_all(lab)
        print(format_report(report))
        assert report.ok, format_report(report)
        for name in (INTERNET, UNDERLAY, BYPASS, ROAM):
            assert report.check(name).ok, name
        assert "saw source(s) 198.51.100.1 " in report.check(INTERNET).detail
        # lab-b is not a peer of the laptop: the laptop reaches it through lab-gw (full tunnel).
        s = clients.site(lab, "laptop")
        assert s.client.peers == ("lab-gw",)
        assert ping(s.laptop, lab.mesh.node("lab-b").address).ok
    finally:
        assert netns.down(layout=LAYOUT) == 0


def test_gateway_without_its_masquerade_rule_leaks_the_client_address(env: Env) -> None:
    render_dir = env.render("lab-gateway")
    cut_lines(render_dir / "lab-gw" / "user-data", MASQUERADE_LINE, 1)
    lab = env.boot(render_dir)
    try:
        results = by_name(client_checks.run_client_checks(lab))
        for c in results.values():
            print(f"{'ok ' if c.ok else 'BAD'} {c.name}: {c.detail}")
        assert not results[INTERNET].ok
        laptop = lab.mesh.clients[0].address
        assert f"saw source(s) {laptop} " in results[INTERNET].detail
        for name in (UNDERLAY, BYPASS, ROAM):
            assert results[name].ok, name  # the tunnel itself is fine; only the NAT is gone
    finally:
        assert netns.down(layout=LAYOUT) == 0
