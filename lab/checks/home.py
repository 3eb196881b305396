"""Checks of a node behind NAT (lab.netns.homes): the camera scenario of a self-managed host.

- Through the hub: a roaming client that dials only the hub reaches a host on the LAN the
  home node routes (a camera); the echo requests arrive on the home node's wg0 from the
  client's own overlay address, so the hub relayed them (the home node peers with nothing else).
- The camera sees only the home node's LAN address (masquerade out of its LAN interface), and
  has no route back to the mesh at all: without the NAT no reply could find its way.
- Keepalive: the home router forgets an idle UDP mapping within seconds; after a longer quiet
  spell (nothing sent by anyone but the node's PersistentKeepalive) the hub still reaches the
  node at the same mapped address. And when the router moves the node to new ports and forgets
  every flow (a router reboot), the hub follows by itself within the keepalive plus a grace.
A stack without a node behind NAT gets no line.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from lab.checks.patterns import Source, echo_sources, has_route, lan_iface
from lab.core.capture import Capture
from lab.core.manifest import LabNode
from lab.core.probes import WG, Ping, peer_endpoints, ping, ping_text
from lab.core.results import CheckResult
from lab.netns import clients, homes
from lab.netns.homes import HOME_NAT_UDP_TIMEOUT, HomeSite
from lab.netns.running import LanHost, NetnsLab

VIA_HUB = "home: client reaches the camera LAN through the hub"
CAMERA = "home: the camera sees only the home node's LAN address"
KEEPALIVE = "home: keepalive holds the home router's NAT mapping"
NAT_MOVE = "home: the hub follows the home router to new ports"
HOLD_MARGIN = 2.0  # seconds of quiet beyond the router's UDP timeout
FOLLOW_GRACE = 5.0  # seconds beyond the keepalive interval for the hub to follow a moved mapping


def named(check: str, node: str) -> str:
    return f"{check} ({node})"


@dataclass(frozen=True)
class Probe:
    """One ping from `source` to a host behind a home node, with what the captures saw."""

    source: Source
    host: LanHost
    via: str | None  # the hub the source reaches the home node through, None when direct
    result: Ping
    relayed: int  # echo requests from the source's overlay address on the home node's wg0
    seen: frozenset[str]  # echo request sources on the camera's own interface


def sources_for(lab: NetnsLab, node: LabNode) -> list[tuple[Source, str | None]]:
    """Who pings the home node's LAN: every client (with the hub it goes through) and every
    node on the lab internet that peers with it."""
    out: list[tuple[Source, str | None]] = []
    for s in clients.sites(lab.layout, lab.mesh):
        via = (
            None
            if node.name in s.client.peers
            else next((p for p in s.client.peers if p in lab.mesh.lab_names and lab.mesh.node(p).hub), None)
        )
        out.append((Source(f"client {s.name}", s.laptop, s.client.address), via))
    for n in lab.nodes:
        if n.name != node.name and not n.behind_nat and n.name in lab.mesh.node_peers(node.name):
            out.append((Source(n.name, lab.node(n.name), n.address), None))
    return out


def probe(lab: NetnsLab, host: LanHost, source: Source, via: str | None) -> Probe:
    node = lab.mesh.node(host.router)
    iface, _ = lan_iface(node, host)
    on_wg0 = f"icmp and src host {source.address} and dst host {host.address}"
    with (
        Capture(host.place, iface, f"icmp and dst host {host.address}") as camera,
        Capture(lab.node(node.name), WG, on_wg0) as arrived,
    ):
        result = ping(source.place, host.address, count=3, deadline=5)
    relayed = sum(1 for line in arrived.lines if "echo request" in line)
    return Probe(source, host, via, result, relayed, frozenset(echo_sources(camera.lines)))


def camera_checks(lab: NetnsLab, s: HomeSite) -> list[CheckResult]:
    """VIA_HUB per client going through a hub, CAMERA over every probe of the node's LAN."""
    node = s.node
    hosts = [h for h in lab.lan_hosts() if h.router == node.name and h.address.version == 4]
    if not hosts or not node.masquerade:
        return []
    host = hosts[0]
    probes = [probe(lab, host, src, via) for src, via in sources_for(lab, node)]
    results: list[CheckResult] = []
    for p in probes:
        if p.via is None or not p.source.label.startswith("client "):
            continue
        ok = p.result.ok and p.relayed > 0
        results.append(
            CheckResult(
                named(VIA_HUB, node.name),
                ok,
                f"{p.source.label} -> {host.address} (behind {node.name}) via {p.via}: "
                f"{ping_text(p.result)}; {p.relayed} echo requests from {p.source.address} "
                f"arrived on {node.name}'s wg0 (its peers: {', '.join(lab.mesh.node(node.name).peers)})",
            )
        )
    _, lan_address = lan_iface(node, host)
    seen = frozenset().union(*(p.seen for p in probes)) if probes else frozenset()
    routed_back = [str(p.source.address) for p in probes if has_route(host.place, p.source.address)]
    lost = [p.source.label for p in probes if not p.result.ok]
    ok = bool(probes) and not lost and seen == {str(lan_address)} and not routed_back
    detail = (
        f"{len(probes) - len(lost)}/{len(probes)} sources ({', '.join(p.source.label for p in probes)}) "
        f"answered by {host.address} on {node.lan_interface or 'its LAN'}; sources seen there: "
        f"{', '.join(sorted(seen)) or 'none'} (want {lan_address}); route back to the mesh: "
        f"{', '.join(routed_back) or 'none'}"
    )
    results.append(CheckResult(named(CAMERA, node.name), ok, detail))
    return results


def dialed(lab: NetnsLab, node: LabNode) -> list[LabNode]:
    """The booted nodes the home node dials (its peers on the lab internet)."""
    return [lab.mesh.node(p) for p in lab.mesh.node_peers(node.name) if not lab.mesh.node(p).behind_nat]


def check_keepalive(lab: NetnsLab, s: HomeSite, quiet: float | None = None) -> CheckResult:
    """After a quiet spell longer than the router's UDP timeout, each node the home node dials
    still reaches it at the same mapped address (only its keepalive crossed the router)."""
    node = s.node
    name = named(KEEPALIVE, node.name)
    peers = dialed(lab, node)
    if not peers:
        return CheckResult(name, False, f"{node.name} dials no node in the lab")
    wait = HOME_NAT_UDP_TIMEOUT + HOLD_MARGIN if quiet is None else quiet
    before = {p.name: peer_endpoints(lab.node(p.name)).get(node.public_key, "(none)") for p in peers}
    # Each peer pings first: the home node answers, so no passive keepalive of its own is due
    # during the quiet spell; only its PersistentKeepalive can cross the router then.
    primed = {p.name: ping(lab.node(p.name), node.address, count=1, deadline=3) for p in peers}
    time.sleep(wait)
    parts: list[str] = []
    ok = True
    for p in peers:
        entries = homes.mapping_entries(s, p)
        after_ping = ping(lab.node(p.name), node.address, count=2, deadline=3)
        after = peer_endpoints(lab.node(p.name)).get(node.public_key, "(none)")
        held = primed[p.name].ok and after_ping.ok and after == before[p.name] and bool(entries)
        ok = ok and held
        parts.append(
            f"{p.name} -> {node.name}: {ping_text(after_ping)}, endpoint {before[p.name]} -> {after}, "
            f"{len(entries)} router mapping(s)"
            + ("" if primed[p.name].ok else f" (first ping: {ping_text(primed[p.name])})")
        )
    detail = (
        f"after {wait:g} s of quiet (router forgets idle UDP after {HOME_NAT_UDP_TIMEOUT} s; "
        f"keepalive {node.keepalive or 'none'} s): " + "; ".join(parts)
    )
    return CheckResult(name, ok, detail)


def check_nat_move(lab: NetnsLab, s: HomeSite) -> CheckResult:
    """The router moves the node to new ports and forgets its flows; each node it dials reaches
    it again within the keepalive plus a grace, learning the new port from the node's keepalive."""
    node = s.node
    peers = dialed(lab, node)
    new = clients.change_nat_ports(s)
    start = time.monotonic()
    limit = (node.keepalive or 0) + FOLLOW_GRACE
    parts: list[str] = []
    ok = bool(peers)
    for p in peers:
        took = follow(lab, node, p, new, start + limit)
        after = peer_endpoints(lab.node(p.name)).get(node.public_key, "(none)")
        outcome = f"reached after {took - start:.1f} s" if took is not None else f"not within {limit:g} s"
        parts.append(f"{p.name}: {node.name} at {after}, {outcome}")
        ok = ok and took is not None
    return CheckResult(named(NAT_MOVE, node.name), ok, f"ports now {new[0]}-{new[1]}; " + "; ".join(parts))


def follow(
    lab: NetnsLab, node: LabNode, peer: LabNode, new: clients.PortRange, deadline: float
) -> float | None:
    """Ping the node from `peer` until its endpoint there is in `new` and a reply comes."""
    while time.monotonic() < deadline:
        endpoint = peer_endpoints(lab.node(peer.name)).get(node.public_key, "")
        port = endpoint.rpartition(":")[2]
        moved = port.isdigit() and new[0] <= int(port) <= new[1]
        if ping(lab.node(peer.name), node.address, count=1, deadline=1).ok and moved:
            return time.monotonic()
    return None


def run_home_checks(lab: NetnsLab, sites: Sequence[HomeSite] | None = None) -> list[CheckResult]:
    """Every node behind NAT: the camera checks, the held mapping, then the router's port move."""
    results: list[CheckResult] = []
    for s in homes.sites(lab.layout, lab.mesh) if sites is None else sites:
        results += camera_checks(lab, s)
        results.append(check_keepalive(lab, s))
        results.append(check_nat_move(lab, s))
    return results
