"""A handle on a running netns lab: its mesh (from mesh.json) and where each host lives."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from lab.core.manifest import LabMesh, LabNode
from lab.core.proc import Place
from lab.netns.layout import Layout
from lab.netns.topology import place_internet, place_lan, place_node, subnet_hosts

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class LanHost:
    """The host standing in a routed subnet behind `router`."""

    router: str
    address: Address
    place: Place


@dataclass(frozen=True)
class NetnsLab:
    layout: Layout
    mesh: LabMesh

    @property
    def nodes(self) -> tuple[LabNode, ...]:
        return self.mesh.nodes

    def node(self, name: str) -> Place:
        return place_node(self.layout, name)

    @property
    def internet(self) -> Place:
        return place_internet(self.layout)

    def lan_hosts(self) -> list[LanHost]:
        return [
            LanHost(n.name, subnet_hosts(net)[1], place_lan(self.layout, n.name))
            for n in self.mesh.nodes
            for net in n.subnets
        ]

    def free_overlay_address(self) -> ipaddress.IPv4Address:
        """An overlay address no node or client holds: nobody's AllowedIPs contain it."""
        used = {n.address for n in self.mesh.nodes} | set(self.mesh.client_addresses)
        for candidate in reversed(list(self.mesh.cidr.hosts())):
            if candidate not in used:
                return candidate
        raise ValueError(f"{self.mesh.cidr} has no free address")
