"""Compute the mesh as data: addresses, who peers with whom, AllowedIPs, routes, MTU, roles.

Pure functions over a validated MeshSpec (Kilo's approach: topology first, backends later).
The one routing rule behind every pattern: each member sends traffic for a destination either
straight to it (a direct peer) or to the peer that forwards it (a hub or a gateway); a peer's
AllowedIPs are exactly what is routed to it, so no two peers of one config ever overlap.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mesh.errors import ConfigError, Problem
from mesh.networks import WG_OVERHEAD
from mesh.plan_types import ClientPlan, InterfacePlan, MeshPlan, NodePlan, PeerKind, PeerPlan
from mesh.spec import ClientSpec, IPNetwork, MeshSpec, NodeSpec

IPV4_ANY = ipaddress.IPv4Network("0.0.0.0/0")
IPV6_ANY = ipaddress.IPv6Network("::/0")
# ext: what a host behind NAT sends when `wgmesh:mesh.keepalive` is 0 (wg(8)'s "sensible" 25 s).
DEFAULT_NAT_KEEPALIVE = 25

Member = NodeSpec | ClientSpec


@dataclass(frozen=True)
class Addresses:
    v4: ipaddress.IPv4Address
    v6: ipaddress.IPv6Address | None


def build_plan(spec: MeshSpec) -> MeshPlan:
    """The whole mesh plan; raises ConfigError when automatic addresses cannot be stable."""
    addrs = allocate_addresses(spec)
    topo = _Topology(spec, addrs)
    tables = {m: topo.routing_table(m) for m in topo.members}
    mtus = _mtus(topo, tables)
    nodes = tuple(_node_plan(topo, n, tables[n.name], mtus[n.name]) for n in spec.nodes)
    clients = tuple(_client_plan(topo, c, tables[c.name], mtus[c.name]) for c in spec.clients)
    return MeshPlan(spec=spec, nodes=nodes, clients=clients)


# ----------------------------------------------------------------------------- addressing


def hashed_host(name: str, net: IPNetwork) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address a name gets when none is configured: a pure function of (name, network).

    Depending on nothing else is what makes allocation stable: adding or removing another member
    can never move this one. A clash is reported, never resolved silently by moving someone.
    """
    digest = hashlib.sha256(f"wgmesh address\0{name}".encode()).digest()
    # Skip the network address, and the broadcast address on IPv4.
    usable = net.num_addresses - (2 if net.version == 4 else 1)
    offset = 1 + int.from_bytes(digest[:16], "big") % usable
    return net.network_address + offset


def allocate_addresses(spec: MeshSpec) -> dict[str, Addresses]:
    members: list[Member] = [*spec.nodes, *spec.clients]
    mesh = spec.mesh
    taken4: dict[object, Member] = {m.address: m for m in members if m.address is not None}
    taken6: dict[object, Member] = {m.address6: m for m in members if m.address6 is not None}
    # A suggested free address must not be one another automatic member already lands on.
    avoid4: set[object] = {hashed_host(m.name, mesh.cidr) for m in members if m.address is None}
    avoid6: set[object] = set()
    if mesh.cidr6 is not None:
        avoid6 = {hashed_host(m.name, mesh.cidr6) for m in members if m.address6 is None}
    problems: list[Problem] = []
    out: dict[str, Addresses] = {}
    for m in members:
        v4: object = m.address
        if v4 is None:
            v4 = _claim(m, "address", hashed_host(m.name, mesh.cidr), taken4, avoid4, mesh.cidr, problems)
        v6: object = m.address6
        if v6 is None and mesh.cidr6 is not None:
            addr6 = hashed_host(m.name, mesh.cidr6)
            v6 = _claim(m, "address6", addr6, taken6, avoid6, mesh.cidr6, problems)
        assert isinstance(v4, ipaddress.IPv4Address)
        assert v6 is None or isinstance(v6, ipaddress.IPv6Address)
        out[m.name] = Addresses(v4, v6)
    if problems:
        raise ConfigError(problems)
    return out


def _claim(
    m: Member,
    attr: str,
    addr: object,
    taken: dict[object, Member],
    avoid: set[object],
    net: IPNetwork,
    problems: list[Problem],
) -> object:
    holder = taken.get(addr)
    if holder is None:
        taken[addr] = m
        return addr
    free = next((h for h in net.hosts() if h not in taken and h not in avoid), None)
    if free is not None:
        avoid.add(free)  # two clashes in one run get two different suggestions
    tip = f" (free: {free})" if free is not None else f" ({net} is full)"
    problems.append(
        Problem(
            f"{m.key}.{attr}",
            f"the automatic address {addr} for '{m.name}' is taken by {holder.key} '{holder.name}'; "
            f"set {m.key}.{attr} explicitly{tip}",
        )
    )
    return addr


# ----------------------------------------------------------------------------- topology


class _Topology:
    """Who peers with whom, and which peer each member routes each destination through."""

    def __init__(self, spec: MeshSpec, addrs: dict[str, Addresses]) -> None:
        self.spec = spec
        self.addrs = addrs
        members: list[Member] = [*spec.nodes, *spec.clients]
        self.members: dict[str, Member] = {m.name: m for m in members}
        self.hub_mode = spec.mesh.topology == "hub"
        self.hubs = [n.name for n in spec.nodes if n.hub]
        gateways = [n.name for n in spec.nodes if n.gateway]
        self.gateway = gateways[0] if gateways else None
        self.attach = {c.name: self._attachment(c) for c in spec.clients}
        self.peers = {m: self._direct_peers(m) for m in self.members}
        self._own = {m: self._own_networks(m) for m in self.members}

    def _attachment(self, c: ClientSpec) -> list[str]:
        """The nodes a client keeps a tunnel to."""
        if c.full_tunnel:
            assert self.gateway is not None  # spec validation guarantees a gateway
            return [self.gateway]
        if self.hub_mode:
            return list(self.hubs)
        return [n.name for n in self.spec.nodes if not n.behind_nat]  # ext: a client cannot dial it

    def _direct_peers(self, name: str) -> list[str]:
        member = self.members[name]
        if isinstance(member, ClientSpec):
            return self.attach[name]
        if self.is_spoke(name):
            nodes = list(self.hubs)
        else:
            nodes = [n.name for n in self.spec.nodes if n.name != name]
        clients = [c.name for c in self.spec.clients if name in self.attach[c.name]]
        return nodes + clients

    def is_spoke(self, name: str) -> bool:
        member = self.members[name]
        return self.hub_mode and isinstance(member, NodeSpec) and not member.hub

    def primary_hub(self, viewer: str) -> str | None:
        """The hub a spoke (or hub-attached client) sends everything it has no direct peer for."""
        if not self.hub_mode or (isinstance(self.members[viewer], NodeSpec) and not self.is_spoke(viewer)):
            return None
        return next((h for h in self.hubs if h in self.peers[viewer]), None)

    def routing_table(self, viewer: str) -> dict[str, list[str]]:
        """Direct peer -> the destinations `viewer` sends through it (unreachable ones omitted)."""
        direct = self.peers[viewer]
        table: dict[str, list[str]] = {p: [] for p in direct}
        me = self.members[viewer]
        full_tunnel = isinstance(me, ClientSpec) and me.full_tunnel
        via_gateway = self.gateway if self.gateway in table else None
        primary = self.primary_hub(viewer)
        for dest, target in self.members.items():
            if dest == viewer:
                continue
            if dest in table:
                hop: str | None = dest
            elif full_tunnel:
                hop = direct[0]  # a full-tunnel client sends everything to its gateway
            elif isinstance(target, ClientSpec) and target.full_tunnel and via_gateway:
                hop = via_gateway  # a full-tunnel client is reached through its gateway
            else:
                hop = primary
            if hop is not None:
                table[hop].append(dest)
        return table

    def own(self, name: str) -> list[IPNetwork]:
        return self._own[name]

    def _own_networks(self, name: str) -> list[IPNetwork]:
        """Networks that terminate at a member: its overlay addresses and routed subnets."""
        a = self.addrs[name]
        nets: list[IPNetwork] = [ipaddress.ip_network(a.v4)]
        if a.v6 is not None:
            nets.append(ipaddress.ip_network(a.v6))
        member = self.members[name]
        if isinstance(member, NodeSpec):
            nets.extend(member.subnets)
        return nets


# ----------------------------------------------------------------------------- per member


def _allowed_ips(topo: _Topology, viewer: str, peer: str, routed: list[str]) -> tuple[IPNetwork, ...]:
    member = topo.members[viewer]
    if isinstance(member, ClientSpec) and member.full_tunnel:
        return (IPV4_ANY, IPV6_ANY)
    explicit = _sorted(n for d in routed for n in topo.own(d))
    if peer != topo.primary_hub(viewer):
        return explicit
    # A spoke routes the whole overlay to its hub, so adding a spoke changes no other spoke,
    # unless another direct peer lives inside the overlay (a second hub, a full-tunnel client
    # at a spoke gateway): then an aggregate would overlap that peer, so list destinations.
    mesh = topo.spec.mesh
    overlay = _overlay(mesh.cidr, mesh.cidr6)
    if len(topo.peers[viewer]) > 1:
        return explicit
    return _sorted([*overlay, *(n for n in explicit if not _within(n, overlay))])


def _overlay(cidr: ipaddress.IPv4Network, cidr6: ipaddress.IPv6Network | None) -> list[IPNetwork]:
    return [cidr] if cidr6 is None else [cidr, cidr6]


def _within(net: IPNetwork, nets: Sequence[IPNetwork]) -> bool:
    return any(net.version == o.version and net.subnet_of(o) for o in nets)  # type: ignore[arg-type]


def _sorted(nets: Iterable[IPNetwork]) -> tuple[IPNetwork, ...]:
    unique = set(nets)
    if len(unique) < 2:  # most peers route one /32: skip the sort key (N² calls in a big mesh)
        return tuple(unique)
    return tuple(sorted(unique, key=lambda n: (n.version, n.network_address.packed, n.prefixlen)))


def _psk_epoch(spec: MeshSpec, a: Member, b: Member) -> str | None:
    """Epoch label for a pair's PSK: rotating either end's key (or the mesh's) rotates it too."""
    if not spec.mesh.preshared_keys:
        return None
    lo, hi = sorted((a, b), key=lambda m: m.name)
    return f"{spec.mesh.key_epoch}.{lo.key_epoch}.{hi.key_epoch}"


def _peers(topo: _Topology, viewer: str, table: dict[str, list[str]]) -> tuple[PeerPlan, ...]:
    me = topo.members[viewer]
    keepalive = topo.spec.mesh.keepalive or None
    # ext: a host behind NAT keeps its mapping open with keepalive even when the mesh sends none.
    own_keepalive = (
        (keepalive or DEFAULT_NAT_KEEPALIVE) if isinstance(me, NodeSpec) and me.behind_nat else keepalive
    )
    out = []
    for p, routed in table.items():
        peer = topo.members[p]
        kind: PeerKind = "node" if isinstance(peer, NodeSpec) else "client"
        dialable = isinstance(peer, NodeSpec) and not peer.behind_nat  # ext: listed without Endpoint
        out.append(
            PeerPlan(
                name=p,
                kind=kind,
                allowed_ips=_allowed_ips(topo, viewer, p, routed),
                endpoint=dialable,
                keepalive=own_keepalive if dialable else None,
                psk_epoch=_psk_epoch(topo.spec, me, peer),
            )
        )
    return tuple(out)


def _mtus(topo: _Topology, tables: dict[str, dict[str, list[str]]]) -> dict[str, int]:
    """Each member's wg0 MTU.

    Start from the smallest underlay among the member, its peers and everything routed through
    them, minus 80 (spoke -> hub -> spoke crosses both underlays). Then cap it by the MTU of
    every peer that forwards for it: a forwarder has one wg0 MTU for all its peers, so a packet
    it cannot pass on whole would fragment there. Iterate to the fixed point (MTUs only fall).
    """
    mtus = {
        v: min(topo.members[n].underlay_mtu for n in {v, *t, *(d for ds in t.values() for d in ds)})
        - WG_OVERHEAD
        for v, t in tables.items()
    }
    forwarders = {v: [hop for hop, dests in t.items() if dests != [hop]] for v, t in tables.items()}
    changed = True
    while changed:
        changed = False
        for v, hops in forwarders.items():
            capped = min([mtus[v], *(mtus[h] for h in hops)])
            if capped < mtus[v]:
                mtus[v], changed = capped, True
    return mtus


def _iface(topo: _Topology, m: Member, table: dict[str, list[str]], mtu: int) -> InterfacePlan:
    mesh = topo.spec.mesh
    a = topo.addrs[m.name]
    v6 = ipaddress.IPv6Interface(f"{a.v6}/{mesh.cidr6.prefixlen}") if a.v6 and mesh.cidr6 else None
    is_node = isinstance(m, NodeSpec)
    return InterfacePlan(
        name=m.name,
        kind="node" if is_node else "client",
        address=ipaddress.IPv4Interface(f"{a.v4}/{mesh.cidr.prefixlen}"),
        address6=v6,
        listen_port=mesh.port if is_node else None,
        mtu=mtu,
        peers=_peers(topo, m.name, table),
    )


def _node_plan(topo: _Topology, n: NodeSpec, table: dict[str, list[str]], mtu: int) -> NodePlan:
    iface = _iface(topo, n, table, mtu)
    mesh = topo.spec.mesh
    overlay = _overlay(mesh.cidr, mesh.cidr6)
    routes = _sorted(net for p in iface.peers for net in p.allowed_ips if not _within(net, overlay))
    return NodePlan(
        iface=iface,
        cloud=n.cloud,
        underlay_mtu=n.underlay_mtu,
        routes=routes,
        forwards=n.routes,
        subnets=n.subnets,
        masquerade=n.subnets if n.masquerade else (),
        gateway=n.gateway,
        wg_open_to_world=any(n.name in topo.attach[c.name] for c in topo.spec.clients)
        or any(_unknown_source(topo, p.name) for p in iface.peers),
        # ext: an external peer without an IP endpoint has no address to admit (open_to_world above).
        peer_nodes=tuple(
            p.name for p in iface.peers if p.kind == "node" and not _unknown_source(topo, p.name)
        ),
        lan_interface=n.lan_interface,
    )


def _unknown_source(topo: _Topology, name: str) -> bool:
    """ext: an external node whose packets come from an address no firewall can name in advance
    (behind NAT, a DNS name, or an IP of the other family than the mesh's endpoints)."""
    m = topo.members[name]
    if not isinstance(m, NodeSpec) or m.cloud != "external":
        return False
    ip = m.fixed_source
    return ip is None or ip.version != (6 if topo.spec.mesh.endpoints == "ipv6" else 4)


def _client_plan(topo: _Topology, c: ClientSpec, table: dict[str, list[str]], mtu: int) -> ClientPlan:
    return ClientPlan(iface=_iface(topo, c, table, mtu), dns=c.dns, full_tunnel=c.full_tunnel)
