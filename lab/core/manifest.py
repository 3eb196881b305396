"""The rendered mesh as the lab sees it: mesh.json (no secrets) plus each node's user-data path.

The lab never plans or renders anything itself; it reads `make render` output through the one
definition of mesh.json (mesh/manifest.py) and keeps the nodes it boots (`cloud: lab`, and
`cloud: external` hosts, which the netns lab places behind a NAT box when they have no endpoint).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.core.errors import LabError
from mesh import manifest
from mesh.manifest import ManifestClient, ManifestNode
from mesh.spec import IPNetwork

__all__ = ["IPNetwork", "LabClient", "LabMesh", "LabNode", "load_mesh"]  # IPNetwork: lab/netns/topology.py


@dataclass(frozen=True)
class LabNode(ManifestNode):
    """A node the lab boots: its mesh.json entry, plus where the lab finds and wires it."""

    index: int  # position in mesh.json: fixes the VM driver's MACs and tap names
    user_data: Path

    @property
    def external(self) -> bool:
        """`cloud: external`: a self-managed host (booted from its cloud-config or installer)."""
        return self.cloud == "external"


@dataclass(frozen=True)
class LabClient(ManifestClient):
    """A roaming client: no VM; its wg conf is a secret file next to mesh.json (`conf_file`)."""

    conf_file: Path  # `conf` resolved against the render directory


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
        """The booted nodes `name`'s wg0.conf lists (clients and other clouds left out)."""
        return tuple(p for p in self.node(name).peers if p in self.lab_names)

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


BOOTED_CLOUDS = frozenset({"lab", "external"})


def load_mesh(render_dir: Path) -> LabMesh:
    """Read <render_dir>/mesh.json; the nodes with `cloud: lab` or `external` are the ones the lab boots."""
    path = render_dir / manifest.MANIFEST_FILE
    if not path.is_file():
        raise LabError(f"{path}: not found (run `make render` or `python -m lab up --stack ...`)")
    try:
        doc = manifest.load(path)
    except manifest.ManifestError as e:
        raise LabError(str(e)) from None
    nodes = [
        _node(n, i, render_dir, f"{path}: nodes[{i}]")
        for i, n in enumerate(doc.nodes)
        if n.cloud in BOOTED_CLOUDS
    ]
    if not any(n.cloud == "lab" for n in doc.nodes):
        raise LabError(f"{path}: no `cloud: lab` nodes to boot (see stacks/Pulumi.lab.yaml)")
    return LabMesh(
        stack=doc.stack,
        cidr=doc.cidr,
        nodes=tuple(nodes),
        skipped=tuple(n.name for n in doc.nodes if n.cloud not in BOOTED_CLOUDS),
        clients=tuple(_client(c, render_dir) for c in doc.clients),
        topology=doc.topology,
        cidr6=doc.cidr6,
        endpoints=doc.endpoints,
    )


def _node(node: ManifestNode, index: int, render_dir: Path, where: str) -> LabNode:
    """A lab node and its rendered user-data (which must exist: the lab boots it)."""
    user_data = render_dir / node.name / "user-data"
    if not user_data.is_file():
        raise LabError(f"{where}: {user_data} not found")
    return LabNode(**_fields(node), index=index, user_data=user_data)


def _client(client: ManifestClient, render_dir: Path) -> LabClient:
    """A client; its conf path is relative to the render dir (clients/<name>.conf)."""
    return LabClient(**_fields(client), conf_file=render_dir / client.conf)


def _fields(entry: ManifestNode | ManifestClient) -> dict[str, Any]:
    """An entry's mesh.json fields by name (shallow: the lab types only add fields)."""
    return {f.name: getattr(entry, f.name) for f in dataclasses.fields(entry)}
