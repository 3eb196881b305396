"""What every node and client of the mesh is to be: the data the renderer and the cloud code read.

Separate from `plan.py` (which computes it) so consumers depend only on the shape.
Keys and public IPs are not here: they are resolved later (Pulumi Outputs or fresh keys for
`make render`) and handed to the renderer next to the plan.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from mesh.spec import IPNetwork, MeshSpec

PeerKind = Literal["node", "client"]


@dataclass(frozen=True)
class PeerPlan:
    """One [Peer] section as seen from the config that holds it."""

    name: str  # the peer's node or client name (keys and endpoints are looked up by it)
    kind: PeerKind
    allowed_ips: tuple[IPNetwork, ...]
    endpoint: bool  # True: Endpoint = <peer's public IP>:<port>; False: the peer roams
    keepalive: int | None  # PersistentKeepalive, None when not sent
    psk_epoch: str | None  # None: no PresharedKey for this pair; else the HKDF epoch label


@dataclass(frozen=True)
class InterfacePlan:
    """The [Interface] part and the peers of one wg0.conf (node or client)."""

    name: str
    kind: PeerKind
    address: ipaddress.IPv4Interface  # overlay address with the overlay prefix length
    address6: ipaddress.IPv6Interface | None
    listen_port: int | None  # None for clients (random port)
    mtu: int
    peers: tuple[PeerPlan, ...]


@dataclass(frozen=True)
class NodePlan:
    """A node: its interface plus what the host must do around it."""

    iface: InterfacePlan
    cloud: str
    underlay_mtu: int
    routes: tuple[IPNetwork, ...]  # non-overlay networks reached through wg0 (wg-quick adds them)
    forwards: bool  # ip_forward (and IPv6 forwarding with cidr6), FORWARD accept on wg0
    subnets: tuple[IPNetwork, ...]  # its own networks routed into the mesh (LAN, VPC, containers)
    masquerade: tuple[IPNetwork, ...]  # NAT mesh traffic going into these local subnets (jumpbox)
    gateway: bool  # NAT mesh traffic out of the public interface (exit node)
    wg_open_to_world: bool  # roaming clients connect here: UDP port open to 0.0.0.0/0 and ::/0
    peer_nodes: tuple[str, ...]  # nodes whose static IPs must reach this node's UDP port
    lan_interface: str | None = None  # ext: masquerade only out of this interface (external hosts)

    @property
    def name(self) -> str:
        return self.iface.name


@dataclass(frozen=True)
class ClientPlan:
    iface: InterfacePlan
    dns: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]
    full_tunnel: bool

    @property
    def name(self) -> str:
        return self.iface.name


@dataclass(frozen=True)
class MeshPlan:
    spec: MeshSpec
    nodes: tuple[NodePlan, ...]
    clients: tuple[ClientPlan, ...]

    def node(self, name: str) -> NodePlan:
        return self._nodes_by_name[name]

    def client(self, name: str) -> ClientPlan:
        return self._clients_by_name[name]

    def interface(self, name: str) -> InterfacePlan:
        member = self._nodes_by_name.get(name) or self._clients_by_name.get(name)
        if member is None:
            raise KeyError(name)
        return member.iface

    # Lookups by name are made once per peer while rendering: dicts keep that O(1), not O(N).
    @cached_property
    def _nodes_by_name(self) -> dict[str, NodePlan]:
        return {n.name: n for n in self.nodes}

    @cached_property
    def _clients_by_name(self) -> dict[str, ClientPlan]:
        return {c.name: c for c in self.clients}
