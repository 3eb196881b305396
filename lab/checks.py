"""Health checks of a running netns lab, as data: tests assert on them, `make lab` prints them.

Positive: every node pair pings over wg0 (with a handshake and a full-size don't-fragment
ping at the planned MTU), hosts behind routed subnets reach the nodes and each other, the
underlay carries nothing but WireGuard UDP, and a SYN-ACK crossing a forwarding node has its
MSS clamped. Negative: a node holding a wrong key for a peer cannot reach it, and a packet
from an address outside the sender's AllowedIPs is dropped by the receiver.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

from lab.capture import Capture, mss_values
from lab.manifest import LabNode
from lab.negative import check_outside_allowed_ips, check_wrong_peer_key
from lab.probes import (
    IPV4_ICMP_OVERHEAD,
    TCP_IPV4_OVERHEAD,
    WG,
    Ping,
    latest_handshakes,
    parallel,
    ping,
    ping_text,
    transfer,
)
from lab.proc import Place
from lab.results import CheckResult, HealthReport, PairResult
from lab.running import Address, NetnsLab
from lab.state import BRIDGE

_UDP = re.compile(r"^IP (\d+\.\d+\.\d+\.\d+)\.(\d+) > (\d+\.\d+\.\d+\.\d+)\.(\d+): UDP, length \d+$")


# ----------------------------------------------------------------------------- positive checks


def check_pairs(lab: NetnsLab) -> tuple[PairResult, ...]:
    """Every ordered node pair: ping, full-size DF ping at the planned MTU, handshake age."""
    pairs = [(a, b) for a in lab.nodes for b in lab.nodes if a.name != b.name]

    def probe(pair: tuple[LabNode, LabNode]) -> tuple[Ping, Ping]:
        a, b = pair
        where = lab.node(a.name)
        first = ping(where, b.address)
        full = ping(where, b.address, count=2, size=a.mtu - IPV4_ICMP_OVERHEAD, df=True)
        return first, full

    results = parallel(probe, pairs)
    now = time.time()
    handshakes = {n.name: latest_handshakes(lab.node(n.name)) for n in lab.nodes}
    out: list[PairResult] = []
    for (a, b), (first, full) in zip(pairs, results, strict=True):
        ts = handshakes[a.name].get(b.public_key, 0)
        out.append(
            PairResult(
                src=a.name,
                dst=b.name,
                address=str(b.address),
                handshake_age=round(max(0.0, now - ts), 1) if ts else None,
                ping=first,
                mtu=a.mtu,
                df_ping=full,
            )
        )
    return tuple(out)


def check_subnets(lab: NetnsLab) -> tuple[CheckResult, ...]:
    """Routed subnets across the mesh: nodes -> lan hosts, lan hosts -> nodes, lan -> lan."""
    probes: list[tuple[str, Place, Address]] = []
    hosts = lab.lan_hosts()
    for host in hosts:
        for n in lab.nodes:
            if n.name != host.router:
                probes.append(
                    (f"{n.name} -> {host.address} (behind {host.router})", lab.node(n.name), host.address)
                )
                probes.append((f"{host.address} (behind {host.router}) -> {n.name}", host.place, n.address))
        for other in hosts:
            if other.router != host.router and other.address.version == host.address.version:
                label = f"{host.address} (behind {host.router}) -> {other.address} (behind {other.router})"
                probes.append((label, host.place, other.address))

    def probe(p: tuple[str, Place, Address]) -> CheckResult:
        label, where, dst = p
        result = ping(where, dst)
        return CheckResult(f"subnet {label}", result.ok, ping_text(result))

    return tuple(parallel(probe, probes))


def classify_underlay(lines: Sequence[str], endpoints: dict[str, int]) -> tuple[int, list[str]]:
    """(WireGuard packets, everything else) among tcpdump lines from the lab internet.

    A WireGuard packet is UDP between two node public IPs, from the sender's listen port to
    the receiver's.
    """
    wireguard = 0
    other: list[str] = []
    for line in lines:
        m = _UDP.match(line.strip())
        if (
            m
            and endpoints.get(m.group(1)) == int(m.group(2))
            and endpoints.get(m.group(3)) == int(m.group(4))
        ):
            wireguard += 1
        elif line.strip():
            other.append(line.strip())
    return wireguard, other


def check_underlay(lab: NetnsLab, lines: Sequence[str]) -> CheckResult:
    endpoints = {str(n.public_ip): n.listen_port for n in lab.nodes}
    wireguard, other = classify_underlay(lines, endpoints)
    ok = wireguard > 0 and not other
    detail = f"{wireguard} WireGuard UDP packets, {len(other)} other"
    if other:
        detail += ": " + "; ".join(other[:3])
    return CheckResult("underlay carries only WireGuard UDP", ok, detail)


def check_mss_clamp(lab: NetnsLab) -> CheckResult:
    """The SYN-ACK of a host behind a forwarding node reaches another node with a clamped MSS.

    The lan host advertises the MSS of its 1500-byte link; the router must rewrite it to what
    fits its wg0 route, or the far end would send segments the tunnel cannot carry.
    """
    name = "MSS clamped across a forwarding node"
    lan = next((h for h in lab.lan_hosts() if h.address.version == 4), None)
    if lan is None or len(lab.nodes) < 2:
        return CheckResult(name, True, "no IPv4 routed subnet in this stack", skipped=True)
    router = lab.mesh.node(lan.router)
    client = next(n for n in lab.nodes if n.name != lan.router)
    limit = min(router.mtu, client.mtu) - TCP_IPV4_OVERHEAD
    bpf = f"tcp and src host {lan.address} and tcp[tcpflags] & tcp-syn != 0"
    with Capture(lab.node(client.name), WG, bpf) as cap:
        moved = transfer(lab.node(client.name), lan.place, lan.address, seconds=0.5)
    seen = mss_values(cap.lines)
    ok = bool(seen) and max(seen) <= limit and moved.received > 0
    detail = (
        f"{client.name} <- {lan.address} via {router.name}: SYN-ACK mss {seen or 'not seen'} "
        f"(limit {limit}; {moved.received} bytes moved)"
    )
    return CheckResult(name, ok, detail)


# ----------------------------------------------------------------------------- everything


def run_all(lab: NetnsLab, *, negative: bool = True) -> HealthReport:
    """Every check; the underlay is captured for the whole positive phase."""
    with Capture(lab.internet, BRIDGE, "not arp") as underlay:
        pairs = check_pairs(lab)
        subnets = check_subnets(lab)
        mss = check_mss_clamp(lab)
    checks = [*subnets, check_underlay(lab, underlay.lines), mss]
    if negative:
        checks += [check_wrong_peer_key(lab), check_outside_allowed_ips(lab)]
    return HealthReport(pairs, tuple(checks))


def all_handshaken(lab: NetnsLab) -> bool:
    for n in lab.nodes:
        seen = latest_handshakes(lab.node(n.name))
        if any(seen.get(p.public_key, 0) == 0 for p in lab.nodes if p.name != n.name):
            return False
    return True


def wait_for_handshakes(lab: NetnsLab, timeout: float) -> float | None:
    """Seconds until every node has a handshake with every other (keepalives start them)."""
    start = time.monotonic()
    while True:
        if all_handshaken(lab):
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            return None
        time.sleep(0.1)
