"""The rendered mesh as the lab sees it: mesh.json (no secrets) plus each node's user-data path.

The lab never plans or renders anything itself; it only reads `make render` output.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.core.errors import LabError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class LabNode:
    name: str
    index: int  # position in mesh.json: fixes the VM driver's MACs and tap names
    public_ip: ipaddress.IPv4Address
    address: ipaddress.IPv4Address
    address6: ipaddress.IPv6Address | None
    public_key: str
    subnets: tuple[IPNetwork, ...]
    underlay_mtu: int
    mtu: int
    listen_port: int
    user_data: Path
    peers: tuple[str, ...] | None = None  # members in its wg0.conf (nodes, clients); None: not told
    hub: bool = False
    gateway: bool = False
    masquerade: bool = False  # NAT mesh traffic into its subnets (jumpbox)
    public_ip6: ipaddress.IPv6Address | None = None  # IPv6 underlay address (`publicIp6`), if any


@dataclass(frozen=True)
class LabClient:
    """A roaming client: no VM, its wg conf is a secret file next to mesh.json."""

    name: str
    address: ipaddress.IPv4Address
    address6: ipaddress.IPv6Address | None
    public_key: str
    mtu: int
    full_tunnel: bool
    peers: tuple[str, ...]
    keepalive: int | None
    conf: Path


@dataclass(frozen=True)
class LabMesh:
    stack: str
    cidr: ipaddress.IPv4Network
    nodes: tuple[LabNode, ...]
    skipped: tuple[str, ...]  # nodes of other clouds: rendered, not booted here
    clients: tuple[LabClient, ...] = ()
    topology: str = "mesh"  # mesh | hub
    cidr6: ipaddress.IPv6Network | None = None
    endpoints: str = "ipv4"  # the family nodes dial each other on (wgmesh:mesh.endpoints)

    @property
    def client_addresses(self) -> tuple[ipaddress.IPv4Address, ...]:
        return tuple(c.address for c in self.clients)

    @property
    def lab_names(self) -> frozenset[str]:
        return frozenset(n.name for n in self.nodes)

    def node_peers(self, name: str) -> tuple[str, ...]:
        """The booted nodes `name`'s wg0.conf lists (clients and other clouds left out).

        A mesh.json without `peers` (an older render) means a full mesh.
        """
        peers = self.node(name).peers
        if peers is None:
            return tuple(n.name for n in self.nodes if n.name != name)
        return tuple(p for p in peers if p in self.lab_names)

    def route_via(self, src: str, dst: str) -> str | None:
        """The node src sends dst's traffic to: None when they peer directly, else src's first hub."""
        peers = self.node_peers(src)
        if dst in peers:
            return None
        return next((p for p in peers if self.node(p).hub), None)

    def node(self, name: str) -> LabNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def by_public_key(self) -> dict[str, str]:
        return {n.public_key: n.name for n in self.nodes}


def load_mesh(render_dir: Path) -> LabMesh:
    """Read <render_dir>/mesh.json; the nodes with `cloud: lab` are the ones the lab boots."""
    path = render_dir / "mesh.json"
    try:
        doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LabError(f"{path}: not found (run `make render` or `python -m lab up --stack ...`)") from None
    except json.JSONDecodeError as e:
        raise LabError(f"{path}: not JSON ({e.msg}, line {e.lineno})") from None
    nodes: list[LabNode] = []
    skipped: list[str] = []
    for i, raw in enumerate(doc.get("nodes", [])):
        if raw.get("cloud") != "lab":
            skipped.append(str(raw.get("name")))
            continue
        nodes.append(_node(raw, i, render_dir, f"{path}: nodes[{i}]"))
    if not nodes:
        raise LabError(f"{path}: no `cloud: lab` nodes to boot (see stacks/Pulumi.lab.yaml)")
    return LabMesh(
        stack=str(doc.get("stack", "")),
        cidr=ipaddress.IPv4Network(doc["cidr"]),
        nodes=tuple(nodes),
        skipped=tuple(skipped),
        clients=tuple(
            _client(raw, render_dir, f"{path}: clients[{i}]") for i, raw in enumerate(doc.get("clients", []))
        ),
        topology=str(doc.get("topology") or "mesh"),
        cidr6=None if not doc.get("cidr6") else ipaddress.IPv6Network(doc["cidr6"]),
        endpoints=str(doc.get("endpoints") or "ipv4"),
    )


def _node(raw: dict[str, Any], index: int, render_dir: Path, where: str) -> LabNode:
    try:
        name = str(raw["name"])
        user_data = render_dir / name / "user-data"
        if not user_data.is_file():
            raise LabError(f"{where}: {user_data} not found")
        return LabNode(
            name=name,
            index=index,
            public_ip=ipaddress.IPv4Address(raw["public_ip"]),
            address=ipaddress.IPv4Interface(raw["address"]).ip,
            address6=None if not raw.get("address6") else ipaddress.IPv6Interface(raw["address6"]).ip,
            public_key=str(raw["public_key"]),
            subnets=tuple(ipaddress.ip_network(s) for s in raw.get("subnets", [])),
            underlay_mtu=int(raw["underlay_mtu"]),
            mtu=int(raw["mtu"]),
            listen_port=int(raw["listen_port"]),
            user_data=user_data,
            peers=None if raw.get("peers") is None else tuple(str(p) for p in raw["peers"]),
            hub=bool(raw.get("hub", False)),
            gateway=bool(raw.get("gateway", False)),
            masquerade=bool(raw.get("masquerade", False)),
            public_ip6=None if not raw.get("public_ip6") else ipaddress.IPv6Address(raw["public_ip6"]),
        )
    except (KeyError, ValueError, TypeError) as e:
        raise LabError(f"{where}: unusable entry ({type(e).__name__}: {e})") from None


def _client(raw: dict[str, Any], render_dir: Path, where: str) -> LabClient:
    """A client entry; its conf path is relative to the render dir (clients/<name>.conf)."""
    try:
        name = str(raw["name"])
        keepalive = raw.get("keepalive")
        return LabClient(
            name=name,
            address=ipaddress.IPv4Interface(raw["address"]).ip,
            address6=None if not raw.get("address6") else ipaddress.IPv6Interface(raw["address6"]).ip,
            public_key=str(raw["public_key"]),
            mtu=int(raw["mtu"]),
            full_tunnel=bool(raw.get("full_tunnel", False)),
            peers=tuple(str(p) for p in raw.get("peers", ())),
            keepalive=None if keepalive is None else int(keepalive),
            conf=render_dir / str(raw.get("conf") or f"clients/{name}.conf"),
        )
    except (KeyError, ValueError, TypeError) as e:
        raise LabError(f"{where}: unusable entry ({type(e).__name__}: {e})") from None
