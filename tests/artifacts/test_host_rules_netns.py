"""A gateway's rendered `inet wgmesh` table, loaded into a real kernel: NAT and MSS for IPv4 and IPv6.

Four throwaway named network namespaces per test (own prefix, deleted afterwards, none may be
left): `client` plays a mesh peer (its overlay addresses), `gateway` holds the rendered rules
with its mesh side a veth literally named wg0 (the rules match interface names, not the
WireGuard type) and an uplink `up0`, `internet` a host on the uplink with no route back to the
overlay, `lan` a host on a network the gateway routes (its `subnets`). The gateway forwards by
the rendered sysctl file (`sysctl -p`, per-namespace keys only). Nothing touches the host.

The ruleset always comes from `cloudinit.host.nft_ruleset(plan)` for a plan built by the real
planner, so these checks follow whatever the renderer emits. Each check has a twin that cuts
the rule it proves from the rendered text and must then see the other outcome.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cloudinit.host import nft_ruleset, sysctl_conf
from lab.checks.patterns import echo_sources
from lab.core.capture import Capture, mss_values
from lab.core.proc import NETNS_DIR, NODE_ENV, Place, run_in
from mesh.plan import build_plan
from mesh.plan_types import NodePlan
from mesh.spec import parse

from .artifact_helpers import need_root, need_tool

PREFIX = f"wgm-hr{os.getpid()}-"
WG_MTU = 1380  # the route MTU into wg0, below the 1500 of every other link
PORT = 5301
LAN4, LAN6 = "10.0.5.0/24", "fd00:5::/64"
# Uplink: documentation ranges (RFC 5737, RFC 3849); the internet host is .2 / ::2.
UPLINK = {4: ipaddress.ip_interface("203.0.113.1/24"), 6: ipaddress.ip_interface("2001:db8:100::1/64")}
INTERNET = {4: ipaddress.ip_address("203.0.113.2"), 6: ipaddress.ip_address("2001:db8:100::2")}
LAN_GW = {4: ipaddress.ip_interface("10.0.5.1/24"), 6: ipaddress.ip_interface("fd00:5::1/64")}
LAN_HOST = {4: ipaddress.ip_address("10.0.5.2"), 6: ipaddress.ip_address("fd00:5::2")}
FAMILIES = [pytest.param(4, id="ipv4"), pytest.param(6, id="ipv6")]
TCP_OVERHEAD = {4: 40, 6: 60}  # IP + TCP headers: the MSS that fits a route MTU
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_SYN = re.compile(r"^IP6? (\S+)\.\d+ > \S+: Flags \[S\],")

# One TCP connection; the server prints the source address it saw (its view of the NAT).
SERVER = """import socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
s.settimeout(4)
print("ready", flush=True)
try:
    c, peer = s.accept()
except TimeoutError:
    print("none", flush=True)
else:
    print(peer[0], flush=True)
    c.close()
"""
CONNECT = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).close()"


def gateway_plan(subnets: Sequence[str] = ()) -> tuple[NodePlan, NodePlan]:
    """(gateway, peer) from the real planner: a dual-stack two-node mesh whose gw has `gateway: true`."""
    gw: dict[str, Any] = {"name": "gw", "cloud": "lab", "publicIp": "198.51.100.1", "gateway": True}
    if subnets:
        gw["subnets"] = list(subnets)
    spec = parse(
        {
            "mesh": {"cidr": "10.77.0.0/24", "cidr6": "fd77:77::/64", "port": 51820, "topology": "mesh"},
            "nodes": [gw, {"name": "peer", "cloud": "lab", "publicIp": "198.51.100.2"}],
        }
    )
    plan = build_plan(spec)
    gateway, peer = (next(n for n in plan.nodes if n.name == name) for name in ("gw", "peer"))
    assert gateway.gateway and gateway.iface.address6 is not None and peer.iface.address6 is not None
    return gateway, peer


def overlay(node: NodePlan, family: int) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    address = node.iface.address6 if family == 6 else node.iface.address
    assert address is not None
    return address


def cut(text: str, *needles: str) -> str:
    """The ruleset without every line holding all the needles (at least one line must go)."""
    kept = [line for line in text.splitlines() if not all(n in line for n in needles)]
    assert len(kept) < len(text.splitlines()), f"no line holds {needles}"
    return "\n".join(kept) + "\n"


def ours() -> list[str]:
    return sorted(p.name for p in NETNS_DIR.glob(f"{PREFIX}*")) if NETNS_DIR.is_dir() else []


@dataclass
class Net:
    """The four namespaces, plus every process started in them (killed by PID at the end)."""

    client: Place
    gateway: Place
    internet: Place
    lan: Place
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def start(self, place: Place, *cmd: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            place.argv(*cmd),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=dict(NODE_ENV),
        )
        self.procs.append(proc)
        return proc


def _setup(net: Net, gateway: NodePlan, peer: NodePlan, ruleset: str, tmp_path: Path) -> None:
    c, g, i, lan = net.client, net.gateway, net.internet, net.lan
    for place in (c, g, i, lan):
        run_in(place, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
        run_in(place, "ip", "link", "set", "lo", "up")
    for (a, a_if), (b, b_if), mtu in (
        ((g, "wg0"), (c, "c0"), WG_MTU),
        ((g, "up0"), (i, "in0"), 1500),
        ((g, "lan0"), (lan, "l0"), 1500),
    ):
        run_in(a, "ip", "link", "add", a_if, "mtu", str(mtu), "type", "veth", "peer", "name", b_if,
               "mtu", str(mtu), "netns", str(NETNS_DIR / b.netns))  # fmt: skip
        run_in(a, "ip", "link", "set", a_if, "up")
        run_in(b, "ip", "link", "set", b_if, "up")
    for family in (4, 6):
        v = f"-{family}"
        run_in(g, "ip", v, "addr", "add", str(overlay(gateway, family)), "dev", "wg0", "nodad")
        run_in(c, "ip", v, "addr", "add", str(overlay(peer, family)), "dev", "c0", "nodad")
        run_in(c, "ip", v, "route", "add", "default", "via", str(overlay(gateway, family).ip))
        run_in(g, "ip", v, "addr", "add", str(UPLINK[family]), "dev", "up0", "nodad")
        prefix = UPLINK[family].network.prefixlen
        run_in(i, "ip", v, "addr", "add", f"{INTERNET[family]}/{prefix}", "dev", "in0", "nodad")
        run_in(g, "ip", v, "addr", "add", str(LAN_GW[family]), "dev", "lan0", "nodad")
        run_in(lan, "ip", v, "addr", "add", f"{LAN_HOST[family]}/{LAN_GW[family].network.prefixlen}",
               "dev", "l0", "nodad")  # fmt: skip
        run_in(lan, "ip", v, "route", "add", "default", "via", str(LAN_GW[family].ip))
    sysctl = tmp_path / "90-wgmesh.conf"
    sysctl.write_text(sysctl_conf(ipv6=True))
    run_in(g, "sysctl", "-q", "-p", str(sysctl))
    forwarding = run_in(g, "sysctl", "-n", "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding").stdout
    assert forwarding.split() == ["1", "1"]
    rules = tmp_path / "wgmesh.nft"
    rules.write_text(ruleset)
    run_in(g, "nft", "-f", str(rules))


@contextlib.contextmanager
def gateway_net(gateway: NodePlan, peer: NodePlan, ruleset: str, tmp_path: Path) -> Iterator[Net]:
    """Build the namespaces and load `ruleset` into the gateway; afterwards nothing of ours is left."""
    need_root()
    for tool in ("ip", "nsenter", "nft", "sysctl", "tcpdump", "ping"):
        need_tool(tool)
    assert ours() == [], f"left behind by an earlier run: {ours()}"
    names = [f"{PREFIX}{role}" for role in ("client", "gateway", "internet", "lan")]
    client, gw, internet, lan = (Place(name.removeprefix(PREFIX), name) for name in names)
    net = Net(client, gw, internet, lan)
    try:
        for name in names:
            subprocess.run(["ip", "netns", "add", name], check=True, env=dict(NODE_ENV))
        _setup(net, gateway, peer, ruleset, tmp_path)
        yield net
    finally:
        for proc in net.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=5)
        for name in names:
            if (NETNS_DIR / name).exists():
                subprocess.run(["ip", "netns", "del", name], check=False, env=dict(NODE_ENV))
    assert ours() == []
    assert all(p.poll() is not None for p in net.procs)


@dataclass(frozen=True)
class Seen:
    """What a destination host saw of one ping and one TCP connection from the client."""

    ping_ok: bool
    echo_sources: set[str]
    syn_sources: set[str]
    server_peer: str  # the source address the TCP server accepted, or "none"


def from_client(net: Net, dst: Place, iface: str, address: IPAddress) -> Seen:
    """The client pings `address` and opens a TCP connection to it; capture and server at `dst`."""
    server = net.start(dst, sys.executable, "-c", SERVER, str(address), str(PORT))
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    bpf = f"dst host {address} and (icmp or icmp6 or tcp port {PORT})"
    with Capture(dst, iface, bpf) as cap:
        ping = run_in(net.client, "ping", "-c", "1", "-W", "1", str(address), check=False)
        run_in(net.client, sys.executable, "-c", CONNECT, str(address), str(PORT), check=False)
    peer, _ = server.communicate(timeout=10)
    syns = {m.group(1) for line in cap.lines if (m := _SYN.match(line.strip()))}
    return Seen(ping.returncode == 0, echo_sources(cap.lines), syns, peer.strip() or "none")


# ----------------------------------------------------------------------------- internet gateway


@pytest.mark.parametrize("family", FAMILIES)
def test_gateway_masquerades_the_overlay_out_of_its_uplink(family: int, tmp_path: Path) -> None:
    """(a) The internet host sees only the gateway's uplink address, and answers reach the client."""
    gateway, peer = gateway_plan()
    with gateway_net(gateway, peer, nft_ruleset(gateway), tmp_path) as net:
        seen = from_client(net, net.internet, "in0", INTERNET[family])
    uplink = str(UPLINK[family].ip)
    print(f"IPv{family} internet host saw {seen}")
    assert seen == Seen(True, {uplink}, {uplink}, uplink)


@pytest.mark.parametrize("family", FAMILIES)
def test_without_the_masquerade_the_internet_sees_overlay_addresses(family: int, tmp_path: Path) -> None:
    """(b) The check is real: the same ruleset minus its masquerade lines leaks the overlay source."""
    gateway, peer = gateway_plan()
    ruleset = cut(nft_ruleset(gateway), "masquerade")
    with gateway_net(gateway, peer, ruleset, tmp_path) as net:
        seen = from_client(net, net.internet, "in0", INTERNET[family])
    client = str(overlay(peer, family).ip)
    print(f"IPv{family} internet host saw {seen} (masquerade cut)")
    assert seen == Seen(False, {client}, {client}, "none")


@pytest.mark.parametrize("family", FAMILIES)
def test_gateway_does_not_masquerade_into_its_own_subnets(family: int, tmp_path: Path) -> None:
    """(c) A gateway that also routes a subnet (no `masquerade`) delivers mesh traffic there unNATed,
    while the internet still sees only its uplink address."""
    gateway, peer = gateway_plan([LAN4, LAN6])
    assert not gateway.masquerade
    with gateway_net(gateway, peer, nft_ruleset(gateway), tmp_path) as net:
        to_lan = from_client(net, net.lan, "l0", LAN_HOST[family])
        to_internet = from_client(net, net.internet, "in0", INTERNET[family])
    client, uplink = str(overlay(peer, family).ip), str(UPLINK[family].ip)
    print(f"IPv{family} lan host saw {to_lan}; internet host saw {to_internet}")
    assert to_lan == Seen(True, {client}, {client}, client)
    assert to_internet == Seen(True, {uplink}, {uplink}, uplink)


def from_internet_and_lan(net: Net, peer: NodePlan, family: int) -> tuple[str, str]:
    """Sources the client's server accepted: from the internet host (routing the overlay via the
    gateway's uplink, as a neighbour in its cloud network could), then from the lan host."""
    client = overlay(peer, family)
    run_in(
        net.internet, "ip", f"-{family}", "route", "add", str(client.network), "via", str(UPLINK[family].ip)
    )
    return (
        accepted_from(net, net.internet, net.client, client.ip),
        accepted_from(net, net.lan, net.client, client.ip),
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_gateway_forwards_into_wg0_only_from_its_own_subnets(family: int, tmp_path: Path) -> None:
    """A gateway forwards no new connection from its uplink into the mesh; its routed subnet may."""
    gateway, peer = gateway_plan([LAN4, LAN6])
    with gateway_net(gateway, peer, nft_ruleset(gateway), tmp_path) as net:
        from_internet, from_lan = from_internet_and_lan(net, peer, family)
    print(f"IPv{family} client accepted from the internet: {from_internet}, from the lan: {from_lan}")
    assert (from_internet, from_lan) == ("none", str(LAN_HOST[family]))


@pytest.mark.parametrize("family", FAMILIES)
def test_without_the_drop_the_internet_reaches_into_the_mesh(family: int, tmp_path: Path) -> None:
    """The check is real: cut the `oifname $WG ... drop` line and the internet host gets in."""
    gateway, peer = gateway_plan([LAN4, LAN6])
    ruleset = cut(nft_ruleset(gateway), "oifname $WG", "drop")
    with gateway_net(gateway, peer, ruleset, tmp_path) as net:
        from_internet, from_lan = from_internet_and_lan(net, peer, family)
    print(f"IPv{family} client accepted from the internet: {from_internet} (drop cut)")
    assert (from_internet, from_lan) == (str(INTERNET[family]), str(LAN_HOST[family]))


# ----------------------------------------------------------------------------- MSS clamping


def accepted_from(net: Net, src: Place, dst: Place, address: IPAddress) -> str:
    """`src` opens a TCP connection to `address` in `dst`: the source the server saw, or "none"."""
    server = net.start(dst, sys.executable, "-c", SERVER, str(address), str(PORT))
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    run_in(src, sys.executable, "-c", CONNECT, str(address), str(PORT), check=False)
    accepted, _ = server.communicate(timeout=10)
    return accepted.strip() or "none"


def syn_mss(net: Net, peer: NodePlan, family: int) -> tuple[list[int], list[int]]:
    """MSS of the lan host's SYN to the client: (leaving the lan host, arriving out of wg0)."""
    bpf = f"src host {LAN_HOST[family]} and tcp port {PORT}"
    with Capture(net.lan, "l0", bpf) as before, Capture(net.client, "c0", bpf) as after:
        accepted = accepted_from(net, net.lan, net.client, overlay(peer, family).ip)
    assert accepted == str(LAN_HOST[family])  # connected, and routed (not NATed) into the mesh

    def syns(lines: list[str]) -> list[str]:
        return [line for line in lines if "Flags [S]," in line]

    return mss_values(syns(before.lines)), mss_values(syns(after.lines))


@pytest.mark.parametrize("family", FAMILIES)
def test_syn_into_wg0_is_clamped_to_the_route_mtu(family: int, tmp_path: Path) -> None:
    """(d) A SYN from the gateway's subnet, forwarded into wg0 (MTU 1380), leaves with MSS 1380 - headers."""
    gateway, peer = gateway_plan([LAN4, LAN6])
    with gateway_net(gateway, peer, nft_ruleset(gateway), tmp_path) as net:
        before, after = syn_mss(net, peer, family)
    print(f"IPv{family} SYN mss leaving the lan host {before}, out of wg0 {after}")
    assert before == [1500 - TCP_OVERHEAD[family]]
    assert after == [WG_MTU - TCP_OVERHEAD[family]]


@pytest.mark.parametrize("family", FAMILIES)
def test_without_the_clamp_rule_the_syn_keeps_its_mss(family: int, tmp_path: Path) -> None:
    """The MSS check is real: cut the `oifname $WG` clamp and the lan host's MSS crosses unchanged."""
    gateway, peer = gateway_plan([LAN4, LAN6])
    ruleset = cut(nft_ruleset(gateway), "oifname $WG", "maxseg")
    with gateway_net(gateway, peer, ruleset, tmp_path) as net:
        before, after = syn_mss(net, peer, family)
    print(f"IPv{family} SYN mss leaving the lan host {before}, out of wg0 {after} (clamp cut)")
    assert before == after == [1500 - TCP_OVERHEAD[family]]
