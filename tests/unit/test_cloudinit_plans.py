"""Hand-built plans and keys for the cloudinit tests (no planner needed: the renderer is tested alone).

Imported by the other test_cloudinit_* modules; holds no tests of its own.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Sequence

from mesh.keys import NodeKeys, private_key, public_key
from mesh.plan_types import ClientPlan, InterfacePlan, MeshPlan, NodePlan, PeerPlan
from mesh.spec import ClientSpec, Cloud, IPNetwork, MeshSettings, MeshSpec, NodeSpec

MESH_SECRET = bytes(range(32))
PORT = 51820


def net(text: str) -> IPNetwork:
    return ipaddress.ip_network(text)


def raw_key(name: str) -> bytes:
    """Stable 32 bytes per member, so expected public keys can be recomputed in a test."""
    return hashlib.sha256(f"wgmesh test key {name}".encode()).digest()


def private_of(name: str) -> str:
    return private_key(raw_key(name))


def public_of(name: str) -> str:
    return public_key(private_of(name))


def keys_for(plan: MeshPlan, name: str, *, secret: bytes | None = MESH_SECRET) -> NodeKeys:
    members = [n.name for n in plan.nodes] + [c.name for c in plan.clients]
    return NodeKeys(
        private_key=private_of(name),
        public_keys={m: public_of(m) for m in members},
        mesh_secret=secret,
    )


def node_plan(
    name: str,
    index: int,
    peers: Sequence[PeerPlan] = (),
    *,
    dual_stack: bool = False,
    mtu: int = 1420,
    cloud: str = "aws",
    subnets: Sequence[str] = (),
    masquerade: Sequence[str] = (),
    gateway: bool = False,
    own_subnets: Sequence[str] = (),
) -> NodePlan:
    iface = InterfacePlan(
        name=name,
        kind="node",
        address=ipaddress.IPv4Interface(f"10.77.0.{index}/24"),
        address6=ipaddress.IPv6Interface(f"fd77:77::{index}/64") if dual_stack else None,
        listen_port=PORT,
        mtu=mtu,
        peers=tuple(peers),
    )
    return NodePlan(
        iface=iface,
        cloud=cloud,
        underlay_mtu=1500,
        routes=tuple(net(s) for s in subnets),
        forwards=True,
        subnets=tuple(net(s) for s in own_subnets),
        masquerade=tuple(net(s) for s in masquerade),
        gateway=gateway,
        wg_open_to_world=False,
        peer_nodes=tuple(p.name for p in peers if p.kind == "node"),
    )


def mesh_plan(
    clouds: Sequence[Cloud] = ("aws", "gcp", "hcloud"),
    *,
    dual_stack: bool = False,
    psk: bool = True,
    client: bool = True,
    mtu: int = 1380,
    subnet_behind_first: str | None = "10.0.4.0/24",
    masquerade_first: bool = False,
    gateway_last: bool = False,
) -> MeshPlan:
    """A full mesh of nodes n1..nN (one per cloud) plus an optional roaming client `laptop`."""
    names = [f"n{i}" for i in range(1, len(clouds) + 1)]
    epoch = "0" if psk else None

    def own_ips(i: int, name: str) -> tuple[IPNetwork, ...]:
        ips: list[IPNetwork] = [net(f"10.77.0.{i}/32")]
        if dual_stack:
            ips.append(net(f"fd77:77::{i}/128"))
        if i == 1 and subnet_behind_first:
            ips.append(net(subnet_behind_first))
        return tuple(ips)

    client_ips: tuple[IPNetwork, ...] = (net("10.77.0.100/32"),) + (
        (net("fd77:77::100/128"),) if dual_stack else ()
    )
    nodes = []
    for i, name in enumerate(names, start=1):
        peers = [
            PeerPlan(other, "node", own_ips(j, other), endpoint=True, keepalive=25, psk_epoch=epoch)
            for j, other in enumerate(names, start=1)
            if other != name
        ]
        if client:
            peers.append(
                PeerPlan("laptop", "client", client_ips, endpoint=False, keepalive=None, psk_epoch=epoch)
            )
        nodes.append(
            node_plan(
                name,
                i,
                peers,
                dual_stack=dual_stack,
                mtu=mtu,
                cloud=clouds[i - 1],
                subnets=[subnet_behind_first] if i == 1 and subnet_behind_first else [],
                own_subnets=[subnet_behind_first] if i == 1 and subnet_behind_first else [],
                masquerade=[subnet_behind_first]
                if i == 1 and masquerade_first and subnet_behind_first
                else [],
                gateway=gateway_last and i == len(names),
            )
        )
    clients = []
    if client:
        iface = InterfacePlan(
            name="laptop",
            kind="client",
            address=ipaddress.IPv4Interface("10.77.0.100/24"),
            address6=ipaddress.IPv6Interface("fd77:77::100/64") if dual_stack else None,
            listen_port=None,
            mtu=mtu,
            peers=tuple(
                PeerPlan(n, "node", own_ips(j, n), endpoint=True, keepalive=25, psk_epoch=epoch)
                for j, n in enumerate(names, start=1)
            ),
        )
        clients.append(ClientPlan(iface=iface, dns=(ipaddress.IPv4Address("10.77.0.1"),), full_tunnel=False))
    spec = MeshSpec(
        mesh=MeshSettings(
            cidr=ipaddress.IPv4Network("10.77.0.0/24"),
            cidr6=ipaddress.IPv6Network("fd77:77::/64") if dual_stack else None,
            port=PORT,
            preshared_keys=psk,
        ),
        nodes=tuple(
            NodeSpec(name=n, cloud=c, index=i) for i, (n, c) in enumerate(zip(names, clouds, strict=True))
        ),
        clients=(ClientSpec(name="laptop"),) if client else (),
    )
    return MeshPlan(spec=spec, nodes=tuple(nodes), clients=tuple(clients))


def public_ips(plan: MeshPlan, *, v6: bool = False) -> dict[str, str]:
    return {
        n.name: (f"2001:db8::{10 + i:x}" if v6 else f"192.0.2.{10 + i}") for i, n in enumerate(plan.nodes)
    }
