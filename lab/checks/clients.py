"""Checks of the lab's roaming clients (lab.netns.clients): keepalive through NAT, roaming, gateway.

- Every node a client dials reaches the client before the client has sent anything on its
  own: only its PersistentKeepalive told the node where it is (nodes list clients with no
  Endpoint). Then the client reaches the node.
- Roaming: the client's NAT box moves its mapping to new ports and forgets its UDP flows;
  each node must learn the new endpoint from the client's next keepalive and reach the client
  again within the keepalive interval plus a grace, with nothing sent from the client's side.
- Gateway (full-tunnel clients): the lab's internet host is reached, sees only the gateway's
  public IP, the client's underlay carries only WireGuard UDP to the gateway, and wg-quick's
  fwmark policy routing keeps that UDP out of the tunnel (otherwise no handshake could happen).
  The way back in is closed: the internet host, routing a mesh address through the gateway,
  gets nothing into its wg0.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Sequence

from lab.core.capture import Capture
from lab.core.manifest import LabNode
from lab.core.probes import WG, latest_handshakes, parallel, peer_endpoints, ping, ping_text, transfer
from lab.core.proc import Place, run_in
from lab.core.results import CheckResult
from lab.netns.clients import (
    INTERNET_HOST,
    INTERNET_TCP_PORT,
    PortRange,
    change_nat_ports,
    internet_host,
    sites,
    split_nat_wireguard,
)
from lab.netns.clients import ClientSite as Site
from lab.netns.running import NetnsLab

HANDSHAKE_WAIT = 8.0  # seconds for a re-added peer's first handshake
ROAM_GRACE = 5.0  # seconds beyond the keepalive interval for a node to follow a moved client
WG_FWMARK = 51820  # wg-quick's fwmark (and table) for a full-tunnel interface
_SOURCE = re.compile(r"^IP (\d+\.\d+\.\d+\.\d+)(?:\.\d+)? > ")
_UDP = re.compile(r"^IP (\d+\.\d+\.\d+\.\d+)\.(\d+) > (\d+\.\d+\.\d+\.\d+)\.(\d+): UDP, length \d+$")
_ROUTE_DEV = re.compile(r"\bdev (\S+)")


def endpoint_port(endpoint: str) -> int | None:
    host, _, port = endpoint.rpartition(":")
    return int(port) if host and port.isdigit() else None


def dialed_nodes(lab: NetnsLab, s: Site) -> list[LabNode]:
    return [n for n in lab.nodes if n.name in s.client.peers]


# ----------------------------------------------------------------------------- keepalive, roaming


def check_reachability(lab: NetnsLab, s: Site) -> list[CheckResult]:
    """Node -> client first (only keepalives can have announced the client), then client -> node."""
    nodes = dialed_nodes(lab, s)
    inbound = parallel(lambda n: ping(lab.node(n.name), s.client.address), nodes)
    results = [
        CheckResult(f"{n.name} -> client {s.name} (keepalive through NAT)", p.ok, ping_text(p))
        for n, p in zip(nodes, inbound, strict=True)
    ]
    outbound = parallel(lambda n: ping(s.laptop, n.address), nodes)
    results += [
        CheckResult(f"client {s.name} -> {n.name}", p.ok, ping_text(p))
        for n, p in zip(nodes, outbound, strict=True)
    ]
    return results


def _follow(
    lab: NetnsLab, s: Site, node: LabNode, new: PortRange, start: float, deadline: float
) -> str | None:
    """Ping the client from `node` until its endpoint is in `new` and a reply comes; the elapsed
    seconds as text, or None when the deadline passed first."""
    while time.monotonic() < deadline:
        port = endpoint_port(peer_endpoints(lab.node(node.name)).get(s.client.public_key, ""))
        moved = port is not None and new[0] <= port <= new[1]
        if ping(lab.node(node.name), s.client.address, count=1, deadline=1).ok and moved:
            return f"{time.monotonic() - start:.1f} s"
    return None


def check_nat_port_change(lab: NetnsLab, s: Site) -> CheckResult:
    """The NAT box remaps the client to new ports; every node it dials follows it, by itself."""
    name = f"client {s.name} roams: NAT port change"
    nodes = dialed_nodes(lab, s)
    before = {n.name: peer_endpoints(lab.node(n.name)).get(s.client.public_key, "(none)") for n in nodes}
    new = change_nat_ports(s)
    start = time.monotonic()
    limit = (s.client.keepalive or 0) + ROAM_GRACE
    took = parallel(lambda n: _follow(lab, s, n, new, start, start + limit), nodes)
    parts: list[str] = []
    for n, t in zip(nodes, took, strict=True):
        after = peer_endpoints(lab.node(n.name)).get(s.client.public_key, "(none)")
        outcome = f"ping back after {t}" if t else f"no ping back within {limit:g} s"
        parts.append(f"{n.name}: {before[n.name]} -> {after}, {outcome}")
    detail = f"NAT ports now {new[0]}-{new[1]}; " + "; ".join(parts)
    return CheckResult(name, bool(nodes) and all(took), detail)


# ----------------------------------------------------------------------------- gateway


def sources(lines: Sequence[str]) -> set[str]:
    """Source IPs of the IPv4 packets in tcpdump lines."""
    return {m.group(1) for line in lines if (m := _SOURCE.match(line.strip()))}


def foreign_underlay(lines: Sequence[str], local: str, remote: str, port: int) -> tuple[int, list[str]]:
    """(WireGuard packets between `local` and `remote`:`port`, every other line) on a client's wire."""
    wireguard = 0
    other: list[str] = []
    for line in (ln.strip() for ln in lines):
        m = _UDP.match(line)
        src, sport, dst, dport = m.groups() if m else ("", "", "", "")
        if (src, dst, dport) == (local, remote, str(port)) or (src, sport, dst) == (remote, str(port), local):
            wireguard += 1
        elif line:
            other.append(line)
    return wireguard, other


def route_dev(place: Place, dst: str, *extra: str) -> str:
    out = run_in(place, "ip", "-4", "route", "get", dst, *extra).stdout
    m = _ROUTE_DEV.search(out)
    return m.group(1) if m else "(none)"


def check_gateway(lab: NetnsLab, s: Site) -> list[CheckResult]:
    """A full-tunnel client reaches the internet host only through its gateway, masqueraded."""
    gateway = next((n for n in dialed_nodes(lab, s) if n.gateway), None)
    if gateway is None:
        return [CheckResult(f"client {s.name}: gateway", False, "a full-tunnel client dials no gateway node")]
    www = internet_host(lab.layout)
    with (
        Capture(www, "eth0", f"ip and dst host {INTERNET_HOST}") as seen,
        Capture(s.laptop, "eth0", "not arp") as wire,
    ):
        reply = ping(s.laptop, INTERNET_HOST, deadline=5)
        moved = transfer(s.laptop, www, INTERNET_HOST, seconds=0.5, port=INTERNET_TCP_PORT)
    seen_from = sources(seen.lines)
    gw_ip = str(gateway.public_ip)
    ok = reply.ok and moved.received > 0 and seen_from == {gw_ip}
    internet = CheckResult(
        f"client {s.name} -> internet host through {gateway.name}",
        ok,
        f"ping {ping_text(reply)}, TCP {moved.received} bytes; the internet host saw source(s) "
        f"{', '.join(sorted(seen_from)) or 'none'} (gateway {gw_ip})",
    )
    wg, other = foreign_underlay(wire.lines, str(s.lan_address), gw_ip, gateway.listen_port)
    detail = f"{wg} WireGuard UDP packets to/from {gw_ip}:{gateway.listen_port}, {len(other)} other"
    underlay = CheckResult(
        f"client {s.name}'s underlay carries only WireGuard UDP to {gateway.name}",
        wg > 0 and not other,
        detail + (": " + "; ".join(other[:3]) if other else ""),
    )
    marked = route_dev(s.laptop, gw_ip, "mark", str(WG_FWMARK))
    plain = route_dev(s.laptop, str(INTERNET_HOST))
    took = fresh_handshake(s, gateway)
    bypass = CheckResult(
        f"client {s.name}'s handshake stays out of its tunnel",
        marked == "eth0" and plain == s.interface and took is not None,
        f"WireGuard's own packets (fwmark {WG_FWMARK}) leave by {marked}, other traffic by {plain}; "
        + (
            f"a fresh handshake with {gateway.name} under full-tunnel routing after {took:.1f} s"
            if took is not None
            else f"no fresh handshake with {gateway.name} within {HANDSHAKE_WAIT:g} s"
        ),
    )
    return [internet, underlay, bypass]


def check_no_way_in(lab: NetnsLab, gateway: LabNode) -> CheckResult:
    """The internet host routes a mesh address through the gateway: the packets must reach the
    gateway's uplink (or the check proves nothing) and never its wg0 (it forwards into the
    mesh only replies and its own subnets)."""
    target = next((n for n in lab.nodes if n.name in lab.mesh.node_peers(gateway.name)), None)
    name = f"internet -> mesh through {gateway.name} refused"
    if target is None:
        return CheckResult(name, False, f"{gateway.name} has no node peer to aim at")
    www, gw = internet_host(lab.layout), lab.node(gateway.name)
    bpf = f"icmp and src host {INTERNET_HOST} and dst host {target.address}"
    run_in(www, "ip", "route", "add", f"{target.address}/32", "via", str(gateway.public_ip))
    try:
        with Capture(gw, "eth0", bpf) as arrived, Capture(gw, WG, bpf) as tunnelled:
            ping(www, target.address, count=3, deadline=2)
    finally:
        run_in(www, "ip", "route", "del", f"{target.address}/32", "via", str(gateway.public_ip))
    reached, leaked = (sum(1 for ln in c.lines if ln.strip()) for c in (arrived, tunnelled))
    return CheckResult(
        name,
        reached > 0 and leaked == 0,
        f"pings from {INTERNET_HOST} to {target.name} ({target.address}) routed via {gateway.public_ip}: "
        f"{reached} reached its uplink, {leaked} went into its wg0",
    )


def fresh_handshake(s: Site, peer: LabNode) -> float | None:
    """Drop the peer and put it back as it was (fwmark included: a conf without FwMark would
    unset wg-quick's mark and route the handshake into the tunnel) while every route of the
    full tunnel is in place: seconds until the new session's handshake, None if none came."""
    iface = shlex.quote(s.interface)
    readd = (
        f"conf=$(wg showconf {iface}) && wg set {iface} peer {shlex.quote(peer.public_key)} remove "
        f'&& wg syncconf {iface} <(printf "%s\\n" "$conf")'
    )
    start = time.monotonic()
    run_in(s.laptop, "bash", "-c", readd)
    while time.monotonic() - start < HANDSHAKE_WAIT:
        if latest_handshakes(s.laptop, s.interface).get(peer.public_key, 0) > 0:
            return time.monotonic() - start
        ping(s.laptop, peer.address, count=1, deadline=1)  # data to send also starts a handshake
    return None


# ----------------------------------------------------------------------------- everything


def without_client_wireguard(lab: NetnsLab, lines: Sequence[str]) -> list[str]:
    """Lab-internet tcpdump lines minus the clients' WireGuard UDP (a NAT box's mapped port to
    a node's listen port, or back), so the node underlay check judges everything else."""
    nodes = {(str(n.public_ip), str(n.listen_port)) for n in lab.nodes}
    nat_ips = {str(s.nat_ip) for s in sites(lab.layout, lab.mesh)}
    return split_nat_wireguard(nodes, nat_ips, lines)[1]


def run_client_checks(lab: NetnsLab) -> list[CheckResult]:
    """Every client: reachability both ways, gateway checks if full tunnel, then the NAT move."""
    results: list[CheckResult] = []
    all_sites = sites(lab.layout, lab.mesh)
    for s in all_sites:
        results += check_reachability(lab, s)
        if s.client.full_tunnel:
            results += check_gateway(lab, s)
        results.append(check_nat_port_change(lab, s))
    if all_sites:  # the internet host exists
        results += [check_no_way_in(lab, n) for n in lab.nodes if n.gateway]
    return results
