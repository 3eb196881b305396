"""Health checks of a running netns lab, as data: tests assert on them, `make lab` prints them.

Positive: every node pair pings over wg0 (with a handshake and a full-size don't-fragment
ping at the planned MTU; over IPv6 too with cidr6; through the hub in hub and spoke), hosts
behind routed subnets reach the nodes and each other, the underlay carries nothing but
WireGuard UDP, a SYN-ACK crossing a forwarding node has its MSS clamped, and each deployment
pattern in the stack does what it promises (lab.checks.patterns), and a node behind NAT serves
its LAN through the hub and keeps its NAT mapping (lab.checks.home). Negative: a node holding a
wrong key for a peer cannot reach it, and a packet from an address outside the sender's
AllowedIPs is dropped by the receiver.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from lab.checks.clients import run_client_checks, without_client_wireguard
from lab.checks.home import run_home_checks
from lab.checks.negative import check_outside_allowed_ips, check_wrong_peer_key
from lab.checks.patterns import run_patterns
from lab.core.capture import Capture, mss_values
from lab.core.manifest import LabNode
from lab.core.probes import (
    IPV4_ICMP_OVERHEAD,
    TCP_IPV4_OVERHEAD,
    WG,
    Address,
    Ping,
    latest_handshakes,
    parallel,
    ping,
    ping_text,
    transfer,
)
from lab.core.proc import Place
from lab.core.results import CheckResult, HealthReport, PairResult
from lab.netns.homes import home_wireguard
from lab.netns.layout import BRIDGE
from lab.netns.running import NetnsLab

IPV6_ICMP_OVERHEAD = 48  # IPv6 header + ICMPv6 header: ping -s payload for a packet of the MTU
TCP_IPV6_OVERHEAD = 60  # IPv6 + TCP headers: MSS for a path MTU
_UDP = re.compile(r"^IP6? ([0-9a-f.:]+)\.(\d+) > ([0-9a-f.:]+)\.(\d+): UDP, length \d+$")
# What the kernel must send for a node's IPv6 uplink address (endpoints: ipv6): neighbour
# discovery, and MLD reports (from :: as the uplink has no link-local address).
_LINK_CONTROL6 = re.compile(
    r"^IP6 (\S+) > \S+: (?:HBH )?ICMP6, (neighbor solicitation|neighbor advertisement|multicast listener)"
)


# ----------------------------------------------------------------------------- positive checks


@dataclass(frozen=True)
class _Pair:
    src: LabNode
    dst: LabNode
    family: int

    @property
    def address(self) -> Address:
        address = self.dst.address6 if self.family == 6 else self.dst.address
        assert address is not None  # only built for nodes holding an address of the family
        return address


def expected_pairs(lab: NetnsLab) -> list[_Pair]:
    """Every ordered node pair over IPv4, and over IPv6 when the mesh has cidr6.

    Every node reaches every node's overlay address, directly or through its hub.
    """
    pairs = [_Pair(a, b, 4) for a in lab.nodes for b in lab.nodes if a.name != b.name]
    if lab.mesh.cidr6 is not None:
        pairs += [
            _Pair(a, b, 6)
            for a in lab.nodes
            for b in lab.nodes
            if a.name != b.name and a.address6 is not None and b.address6 is not None
        ]
    return pairs


def check_pairs(lab: NetnsLab) -> tuple[PairResult, ...]:
    """Every expected pair: ping, full-size DF ping at the planned MTU, handshake age.

    The handshake is src's with dst when they peer directly, else with the hub carrying it.
    """
    pairs = expected_pairs(lab)

    def probe(pair: _Pair) -> tuple[Ping, Ping]:
        where = lab.node(pair.src.name)
        overhead = IPV6_ICMP_OVERHEAD if pair.family == 6 else IPV4_ICMP_OVERHEAD
        first = ping(where, pair.address)
        full = ping(where, pair.address, count=2, size=pair.src.mtu - overhead, df=True)
        return first, full

    results = parallel(probe, pairs)
    now = time.time()
    handshakes = {n.name: latest_handshakes(lab.node(n.name)) for n in lab.nodes}
    out: list[PairResult] = []
    for pair, (first, full) in zip(pairs, results, strict=True):
        a, b = pair.src, pair.dst
        via = lab.mesh.route_via(a.name, b.name)
        key = lab.mesh.node(via).public_key if via else b.public_key
        ts = handshakes[a.name].get(key, 0)
        out.append(
            PairResult(
                src=a.name,
                dst=b.name,
                address=str(pair.address),
                handshake_age=round(max(0.0, now - ts), 1) if ts else None,
                ping=first,
                mtu=a.mtu,
                df_ping=full,
                via=via,
                family=pair.family,
            )
        )
    return tuple(out)


def _node_address(node: LabNode, version: int) -> Address | None:
    return node.address6 if version == 6 else node.address


def check_subnets(lab: NetnsLab) -> tuple[CheckResult, ...]:
    """Routed subnets across the mesh: nodes -> lan hosts, lan hosts -> nodes, lan -> lan.

    Hosts behind a masquerading node (jumpbox) have no route back to the mesh, so only the
    nodes -> lan host direction applies to them (lab.checks.patterns proves the NAT).
    """
    probes: list[tuple[str, Place, Address]] = []
    hosts = lab.lan_hosts()
    for host in hosts:
        masqueraded = lab.mesh.node(host.router).masquerade
        for n in lab.nodes:
            to_node = _node_address(n, host.address.version)
            if n.name == host.router or to_node is None:
                continue
            probes.append(
                (f"{n.name} -> {host.address} (behind {host.router})", lab.node(n.name), host.address)
            )
            if not masqueraded:
                probes.append((f"{host.address} (behind {host.router}) -> {n.name}", host.place, to_node))
        for other in hosts:
            if (
                other.router != host.router
                and other.address.version == host.address.version
                and not masqueraded
            ):
                label = f"{host.address} (behind {host.router}) -> {other.address} (behind {other.router})"
                probes.append((label, host.place, other.address))

    def probe(p: tuple[str, Place, Address]) -> CheckResult:
        label, where, dst = p
        result = ping(where, dst)
        return CheckResult(f"subnet {label}", result.ok, ping_text(result))

    return tuple(parallel(probe, probes))


def classify_underlay(lines: Sequence[str], endpoints: dict[str, int]) -> tuple[int, list[str]]:
    """(WireGuard packets, everything else) among tcpdump lines from the lab internet.

    A WireGuard packet is UDP between two node public IPs (IPv4, or IPv6 with endpoints: ipv6),
    from the sender's listen port to the receiver's. Neighbour discovery from a node's IPv6
    address and MLD reports (from it or ::) are link control, neither counted nor a leak.
    """
    nodes6 = {ip for ip in endpoints if ":" in ip}
    wireguard = 0
    other: list[str] = []
    for line in lines:
        m = _UDP.match(line.strip())
        c = _LINK_CONTROL6.match(line.strip()) if nodes6 else None
        if (
            m
            and endpoints.get(m.group(1)) == int(m.group(2))
            and endpoints.get(m.group(3)) == int(m.group(4))
        ):
            wireguard += 1
        elif c and (c.group(1) in nodes6 or (c.group(1) == "::" and c.group(2) == "multicast listener")):
            continue
        elif line.strip():
            other.append(line.strip())
    return wireguard, other


def check_underlay(lab: NetnsLab, lines: Sequence[str], from_homes: int = 0) -> CheckResult:
    """`lines` without the clients' and homes' WireGuard (`from_homes` packets of the latter:
    a node behind NAT speaks from its router's address, lab.netns.homes.home_wireguard)."""
    endpoints = {str(n.public_ip): n.listen_port for n in lab.nodes if not n.behind_nat}
    endpoints |= {str(n.public_ip6): n.listen_port for n in lab.nodes if n.public_ip6 is not None}
    wireguard, other = classify_underlay(lines, endpoints)
    wireguard += from_homes
    ok = wireguard > 0 and not other
    detail = f"{wireguard} WireGuard UDP packets, {len(other)} other"
    if other:
        detail += ": " + "; ".join(other[:3])
    return CheckResult("underlay carries only WireGuard UDP", ok, detail)


def check_mss_clamp(lab: NetnsLab) -> CheckResult:
    """The SYN-ACK of a host behind a forwarding node reaches another node with a clamped MSS.

    The lan host advertises the MSS of its 1500-byte link; the router must rewrite it to what
    fits its wg0 route, or the far end would send segments the tunnel cannot carry. Checked
    once per address family that has a routed subnet (IPv6 headers are 20 bytes longer).
    """
    name = "MSS clamped across a forwarding node"
    results = [r for family in (4, 6) if (r := _mss_across_router(lab, family)) is not None]
    if not results:
        return CheckResult(name, True, "no routed subnet in this stack", skipped=True)
    return CheckResult(name, all(ok for ok, _ in results), "; ".join(detail for _, detail in results))


def _mss_across_router(lab: NetnsLab, family: int) -> tuple[bool, str] | None:
    """(ok, detail) for one family, or None without a routed subnet and another node of that family."""
    hosts = [h for h in lab.lan_hosts() if h.address.version == family]
    lan = next((h for h in hosts if not lab.mesh.node(h.router).masquerade), next(iter(hosts), None))
    if lan is None:
        return None
    client = next((n for n in lab.nodes if n.name != lan.router and _node_address(n, family)), None)
    if client is None:
        return None
    router = lab.mesh.node(lan.router)
    limit = min(router.mtu, client.mtu) - (TCP_IPV6_OVERHEAD if family == 6 else TCP_IPV4_OVERHEAD)
    # tcp[] does not reach past an IPv6 header; the lab's packets carry no extension headers.
    syn = "ip6[40 + 13] & 2 != 0" if family == 6 else "tcp[tcpflags] & tcp-syn != 0"
    bpf = f"tcp and src host {lan.address} and {syn}"
    with Capture(lab.node(client.name), WG, bpf) as cap:
        moved = transfer(lab.node(client.name), lan.place, lan.address, seconds=0.5)
    seen = mss_values(cap.lines)
    ok = bool(seen) and max(seen) <= limit and moved.received > 0
    detail = (
        f"IPv{family} {client.name} <- {lan.address} via {router.name}: SYN-ACK mss "
        f"{seen or 'not seen'} (limit {limit}; {moved.received} bytes moved)"
    )
    return ok, detail


# ----------------------------------------------------------------------------- everything


def run_all(lab: NetnsLab, *, negative: bool = True) -> HealthReport:
    """Every check; the underlay is captured for the whole positive phase."""
    with Capture(lab.internet, BRIDGE, "not arp") as underlay:
        pairs = check_pairs(lab)
        subnets = check_subnets(lab)
        mss = check_mss_clamp(lab)
    from_homes, node_underlay = home_wireguard(lab, without_client_wireguard(lab, underlay.lines))
    checks = [
        *subnets,
        check_underlay(lab, node_underlay, from_homes),
        mss,
        *run_patterns(lab, pairs, subnets),
    ]
    checks += run_home_checks(lab)
    checks += run_client_checks(lab)
    if negative:
        checks += [check_wrong_peer_key(lab), check_outside_allowed_ips(lab)]
    return HealthReport(pairs, tuple(checks))


def all_handshaken(lab: NetnsLab) -> bool:
    """Every node has a handshake with every node its wg0.conf lists (clients are not waited for)."""
    for n in lab.nodes:
        seen = latest_handshakes(lab.node(n.name))
        if any(seen.get(lab.mesh.node(p).public_key, 0) == 0 for p in lab.mesh.node_peers(n.name)):
            return False
    return True


def wait_for_handshakes(lab: NetnsLab, timeout: float) -> float | None:
    """Seconds until every node has a handshake with each node peer it expects (keepalives start them)."""
    start = time.monotonic()
    while True:
        if all_handshaken(lab):
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            return None
        time.sleep(0.1)
