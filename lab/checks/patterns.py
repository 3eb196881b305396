"""Checks for the deployment patterns a stack uses: hub and spoke, jumpbox, IPv6 overlay,
IPv6 endpoints.

Each proves the pattern's promise with packets, not with the config: spokes reach each other
through the hub and never directly (a capture on the lab internet), a host behind a
masquerading node with no route back to the mesh answers and sees only the jumpbox's LAN
address, every node pair pings over IPv6, and with `endpoints: ipv6` every node pair's
tunnel runs over the nodes' IPv6 (live endpoints, handshakes, and the underlay capture).
A stack without the pattern gets no line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from lab.core.capture import Capture
from lab.core.manifest import LabNode
from lab.core.probes import WG, Address, Ping, latest_handshakes, parallel, peer_endpoints, ping, ping_text
from lab.core.proc import Place, run_in
from lab.core.results import CheckResult, PairResult
from lab.netns.clients import sites
from lab.netns.layout import BRIDGE
from lab.netns.running import LanHost, NetnsLab
from lab.netns.topology import lan_links, subnet_hosts

HUB_RELAY = "hub: spoke to spoke through the hub, never directly"
JUMPBOX = "jumpbox: host behind a masquerading node"
IPV6 = "IPv6 overlay: ping6 between every pair"
IPV6_ENDPOINTS = "IPv6 endpoints: nodes handshake with each other over IPv6 only"
_UDP_ENDS = re.compile(r"^IP6? ([0-9a-f.:]+)\.\d+ > ([0-9a-f.:]+)\.\d+: UDP")
_ECHO_REQUEST = re.compile(r"^IP6? (\S+) > (\S+): ICMP6?,? echo request")


# ----------------------------------------------------------------------------- hub and spoke


def count_underlay_udp(lines: Sequence[str], spokes: set[str]) -> tuple[int, int]:
    """(UDP packets between two spokes, UDP packets between a spoke and any other node)."""
    direct = via_hub = 0
    for line in lines:
        m = _UDP_ENDS.match(line.strip())
        if not m:
            continue
        ends = {m.group(1), m.group(2)} & spokes
        if len(ends) == 2:
            direct += 1
        elif ends:
            via_hub += 1
    return direct, via_hub


def check_hub_relay(lab: NetnsLab) -> CheckResult:
    """Spoke A pings spoke B: the reply comes, the hub's wg0 carried it, the underlay shows
    UDP only between spokes and the hub, and no spoke holds a peer or Endpoint for a spoke."""
    spokes = [n for n in lab.nodes if not n.hub]
    a, b = spokes[0], spokes[1]
    via = lab.mesh.route_via(a.name, b.name)
    if via is None:
        return CheckResult(HUB_RELAY, False, f"{a.name} peers directly with {b.name}: no hub in between")
    spoke_ips = {str(n.public_ip) for n in spokes}
    direct_peers = [
        f"{s.name} -> {other.name}"
        for s in spokes
        for key, endpoint in peer_endpoints(lab.node(s.name)).items()
        for other in spokes
        if other.name != s.name and (key == other.public_key or endpoint.startswith(f"{other.public_ip}:"))
    ]
    relayed_bpf = f"icmp and src host {a.address} and dst host {b.address}"
    with Capture(lab.internet, BRIDGE, "udp") as underlay, Capture(lab.node(via), WG, relayed_bpf) as hub:
        result = ping(lab.node(a.name), b.address, count=3)
    direct, via_hub = count_underlay_udp(underlay.lines, spoke_ips)
    relayed = sum(1 for line in hub.lines if "echo request" in line)
    ok = result.ok and not direct_peers and direct == 0 and via_hub > 0 and relayed > 0
    detail = (
        f"{a.name} -> {b.name} via {via}: {ping_text(result)}; {relayed} echo requests on {via}'s wg0; "
        f"underlay UDP {via_hub} spoke<->hub, {direct} spoke<->spoke; "
        f"spoke peers/Endpoints for spokes: {', '.join(direct_peers) or 'none'}"
    )
    return CheckResult(HUB_RELAY, ok, detail)


# ----------------------------------------------------------------------------- jumpbox


@dataclass(frozen=True)
class Source:
    """Where a jumpbox probe starts: a node, or a roaming client's namespace."""

    label: str
    place: Place
    address: Address  # its overlay address: must never be seen behind the jumpbox


def lan_iface(node: LabNode, host: LanHost) -> tuple[str, Address]:
    """(the lan namespace's interface for host's subnet, the node's own address on it)."""
    for (_, outer), net in zip(lan_links(node), node.subnets, strict=True):
        router, lan_host = subnet_hosts(net)
        if lan_host == host.address:
            return outer, router
    raise KeyError(host.address)


def has_route(place: Place, dst: Address) -> bool:
    return run_in(place, "ip", "route", "get", str(dst), check=False).returncode == 0


def echo_sources(lines: Sequence[str]) -> set[str]:
    return {m.group(1) for line in lines if (m := _ECHO_REQUEST.match(line.strip()))}


def probe_behind_jumpbox(lab: NetnsLab, host: LanHost, source: Source) -> CheckResult:
    """source pings a host behind a masquerading node; the host must see the node's LAN address."""
    node = lab.mesh.node(host.router)
    iface, jump_lan = lan_iface(node, host)
    routed_back = has_route(host.place, source.address)
    with Capture(host.place, iface, f"icmp and dst host {host.address}") as cap:
        result: Ping = ping(source.place, host.address, count=3)
    seen = echo_sources(cap.lines)
    ok = result.ok and seen == {str(jump_lan)} and not routed_back
    detail = (
        f"{source.label} -> {host.address} (behind {node.name}): {ping_text(result)}; "
        f"sources seen there: {', '.join(sorted(seen)) or 'none'} (want {jump_lan}); "
        f"route back to {source.address}: {'yes (not a jumpbox network)' if routed_back else 'none'}"
    )
    return CheckResult(f"{JUMPBOX} from {source.label}", ok, detail)


def check_jumpbox(lab: NetnsLab, extra_sources: Sequence[Source] = ()) -> list[CheckResult]:
    """Every IPv4 host behind a masquerading node, from one other node and any extra sources.

    `extra_sources`: the roaming clients (a client namespace and its overlay address).
    """
    probes: list[tuple[LanHost, Source]] = []
    for host in lab.lan_hosts():
        router = lab.mesh.node(host.router)
        # Behind a node behind NAT (a home host), lab.checks.home probes it, by its own names.
        if not router.masquerade or router.behind_nat or host.address.version != 4:
            continue
        other = next((n for n in lab.nodes if n.name != host.router), None)
        sources = [
            *([Source(other.name, lab.node(other.name), other.address)] if other else []),
            *extra_sources,
        ]
        probes += [(host, s) for s in sources]
    return parallel(lambda p: probe_behind_jumpbox(lab, *p), probes)


# ----------------------------------------------------------------------------- IPv6


def check_ipv6(lab: NetnsLab, pairs: Sequence[PairResult], subnets: Sequence[CheckResult]) -> CheckResult:
    """One line over the IPv6 pair results and the IPv6 routed-subnet probes already run."""
    dual = [n for n in lab.nodes if n.address6 is not None]
    want = len(dual) * (len(dual) - 1)
    v6 = [p for p in pairs if p.family == 6]
    bad = [f"{p.src} -> {p.dst}" for p in v6 if not (p.ping.ok and p.df_ping.ok)]
    good_pairs = len(v6) - len(bad)
    v6_hosts = {str(h.address) for h in lab.lan_hosts() if h.address.version == 6}
    v6_subnets = [c for c in subnets if any(f" {h} " in f" {c.name} " for h in v6_hosts)]
    bad += [c.name.removeprefix("subnet ") for c in v6_subnets if not c.ok]
    mtus = sorted({p.mtu for p in v6})
    ok = want > 0 and len(v6) == want and not bad
    detail = (
        f"{good_pairs}/{want} node pairs "
        f"(ping6 and DF ping6 at {'/'.join(map(str, mtus)) or '-'} bytes), "
        f"{len(v6_subnets)} IPv6 subnet probes"
    )
    if bad:
        detail += f"; FAILED: {', '.join(bad)}"
    return CheckResult(IPV6, ok, detail)


# ----------------------------------------------------------------------------- IPv6 endpoints


def underlay_udp_families(lines: Sequence[str], node_ips: set[str]) -> tuple[int, int]:
    """(UDP packets between two node IPv6 addresses, UDP packets between two node IPv4 ones)."""
    v6 = v4 = 0
    for line in lines:
        m = _UDP_ENDS.match(line.strip())
        if m and m.group(1) in node_ips and m.group(2) in node_ips:
            if ":" in m.group(1):
                v6 += 1
            else:
                v4 += 1
    return v6, v4


def check_ipv6_endpoints(lab: NetnsLab) -> CheckResult:
    """Every node's live Endpoint for every node peer is that peer's [publicIp6]:port with a
    handshake, and while each pair pings once the lab internet carries node-to-node WireGuard
    over IPv6 and none over IPv4. WireGuard roams to the source of the last packet, so a pair
    that talks over IPv4 at all shows an IPv4 endpoint on at least one side."""
    wrong: list[str] = []
    peers = 0
    for n in lab.nodes:
        live = peer_endpoints(lab.node(n.name))
        shaken = latest_handshakes(lab.node(n.name))
        for name in lab.mesh.node_peers(n.name):
            peer = lab.mesh.node(name)
            peers += 1
            want = f"[{peer.public_ip6}]:{peer.listen_port}"
            got = live.get(peer.public_key, "(none)")
            if got != want or not shaken.get(peer.public_key):
                wrong.append(
                    f"{n.name} -> {name}: {got} (want {want}, handshake {shaken.get(peer.public_key, 0)})"
                )
    node_ips = {str(ip) for n in lab.nodes for ip in (n.public_ip, n.public_ip6) if ip is not None}
    pairs = [(a, b) for a in lab.nodes for b in lab.nodes if a.name != b.name]
    with Capture(lab.internet, BRIDGE, "udp") as underlay:
        pinged = parallel(lambda p: ping(lab.node(p[0].name), p[1].address, count=1), pairs)
    v6, v4 = underlay_udp_families(underlay.lines, node_ips)
    lost = [f"{a.name} -> {b.name}" for (a, b), r in zip(pairs, pinged, strict=True) if not r.ok]
    ok = peers > 0 and not wrong and not lost and v6 > 0 and v4 == 0
    detail = (
        f"{peers - len(wrong)}/{peers} node peers on [v6]:port with a handshake; "
        f"{len(pairs) - len(lost)}/{len(pairs)} pings; underlay UDP between nodes: {v6} IPv6, {v4} IPv4"
    )
    if wrong or lost:
        detail += f"; FAILED: {', '.join([*wrong, *lost][:4])}"
    return CheckResult(IPV6_ENDPOINTS, ok, detail)


# ----------------------------------------------------------------------------- all patterns


def run_patterns(
    lab: NetnsLab, pairs: Sequence[PairResult], subnets: Sequence[CheckResult]
) -> list[CheckResult]:
    """The checks of every pattern the stack uses (none for a plain full mesh)."""
    results: list[CheckResult] = []
    if lab.mesh.topology == "hub" and len([n for n in lab.nodes if not n.hub]) >= 2:
        results.append(check_hub_relay(lab))
    clients = [Source(f"client {c.name}", c.laptop, c.client.address) for c in sites(lab.layout, lab.mesh)]
    results += check_jumpbox(lab, clients)
    if lab.mesh.cidr6 is not None:
        results.append(check_ipv6(lab, pairs, subnets))
    if lab.mesh.endpoints == "ipv6":
        results.append(check_ipv6_endpoints(lab))
    return results
