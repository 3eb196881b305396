"""mesh.json: what `make render` tells the lab and a reader about a rendered mesh (nothing secret).

One definition for both sides: tools/render.py builds it from the plan (`build`) and writes it
(`dumps`); the lab reads it (`load`). The dataclasses below are the format: the JSON keys are
their field names, in field order, and `load` refuses a document that differs in any field
(missing, unknown, wrong type) with the file and the field in the message. A render from an
older version is not guessed at: `make render` writes a new one.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from mesh.plan_types import InterfacePlan, MeshPlan, NodePlan
from mesh.spec import EndpointFamily, IPNetwork, Topology

MANIFEST_FILE = "mesh.json"
_IP_TYPES = (ipaddress.IPv4Address, ipaddress.IPv6Address, ipaddress.IPv4Network, ipaddress.IPv6Network)


class ManifestError(ValueError):
    """A mesh.json that is missing, not JSON, or not this format; names the file and the field."""


@dataclass(frozen=True)
class ManifestNode:
    """A node as rendered: its public and overlay addresses, key, MTUs and the peers in its conf."""

    name: str
    cloud: str
    public_ip: ipaddress.IPv4Address  # lab nodes: their publicIp; cloud nodes: a placeholder
    public_ip6: ipaddress.IPv6Address | None  # static IPv6 underlay address, if the node has one
    address: ipaddress.IPv4Address  # overlay
    address6: ipaddress.IPv6Address | None
    public_key: str
    subnets: tuple[IPNetwork, ...]
    underlay_mtu: int
    mtu: int
    listen_port: int
    peers: tuple[str, ...]  # the members in its wg0.conf (nodes and clients), in conf order
    hub: bool
    gateway: bool
    masquerade: bool  # NAT mesh traffic into its subnets (jumpbox)
    # labhome (issue 15): what the lab needs to place a `cloud: external` host.
    behind_nat: bool  # no endpoint: peers list it without Endpoint, it dials them (keepalive)
    keepalive: int | None  # PersistentKeepalive it sends its peers, None when it sends none
    lan_interface: str | None  # the interface `masquerade` NATs out of (`lanInterface`), if set


@dataclass(frozen=True)
class ManifestClient:
    """A roaming client as rendered; its conf (with its private key) is a file next to mesh.json."""

    name: str
    address: ipaddress.IPv4Address
    address6: ipaddress.IPv6Address | None
    public_key: str
    mtu: int
    full_tunnel: bool
    peers: tuple[str, ...]
    keepalive: int | None  # PersistentKeepalive it sends, None when it sends none
    conf: str  # its wg conf (secret, 0600), relative to the render directory


@dataclass(frozen=True)
class MeshManifest:
    """The whole of mesh.json (a field per top-level key, in the file's order)."""

    stack: str
    topology: Topology
    cidr: ipaddress.IPv4Network
    cidr6: ipaddress.IPv6Network | None
    port: int
    endpoints: EndpointFamily  # the family nodes dial each other on
    nodes: tuple[ManifestNode, ...]
    clients: tuple[ManifestClient, ...]

    def members(self) -> tuple[ManifestNode | ManifestClient, ...]:
        """Nodes then clients: every member with a key and a wg conf."""
        return (*self.nodes, *self.clients)


def client_conf_path(name: str) -> str:
    """Where `make render` writes a client's wg conf, relative to the render directory."""
    return f"clients/{name}.conf"


def build(
    stack: str,
    plan: MeshPlan,
    endpoints: Mapping[str, str],
    public_keys: Mapping[str, str],
    endpoints6: Mapping[str, str] | None = None,
) -> MeshManifest:
    """The manifest of a rendered plan: `endpoints`/`endpoints6` are the public IPs the render used."""
    endpoints6 = endpoints6 or {}
    mesh = plan.spec.mesh
    return MeshManifest(
        stack=stack,
        topology=mesh.topology,
        cidr=mesh.cidr,
        cidr6=mesh.cidr6,
        port=mesh.port,
        endpoints=mesh.endpoints,
        nodes=tuple(
            ManifestNode(
                name=n.name,
                cloud=n.cloud,
                public_ip=ipaddress.IPv4Address(endpoints[n.name]),
                public_ip6=_ip6(endpoints6.get(n.name)),
                address=n.iface.address.ip,
                address6=None if n.iface.address6 is None else n.iface.address6.ip,
                public_key=public_keys[n.name],
                subnets=plan.spec.node(n.name).subnets,
                underlay_mtu=n.underlay_mtu,
                mtu=n.iface.mtu,
                listen_port=_listen_port(n),
                peers=_peers(n.iface),
                hub=plan.spec.node(n.name).hub,
                gateway=n.gateway,
                masquerade=bool(n.masquerade),
                behind_nat=plan.spec.node(n.name).behind_nat,  # labhome
                keepalive=next((p.keepalive for p in n.iface.peers if p.keepalive is not None), None),
                lan_interface=n.lan_interface,
            )
            for n in plan.nodes
        ),
        clients=tuple(
            ManifestClient(
                name=c.name,
                address=c.iface.address.ip,
                address6=None if c.iface.address6 is None else c.iface.address6.ip,
                public_key=public_keys[c.name],
                mtu=c.iface.mtu,
                full_tunnel=c.full_tunnel,
                peers=_peers(c.iface),
                keepalive=next((p.keepalive for p in c.iface.peers if p.keepalive is not None), None),
                conf=client_conf_path(c.name),
            )
            for c in plan.clients
        ),
    )


def _ip6(text: str | None) -> ipaddress.IPv6Address | None:
    return None if text is None else ipaddress.IPv6Address(text)


def _peers(iface: InterfacePlan) -> tuple[str, ...]:
    return tuple(p.name for p in iface.peers)


def _listen_port(node: NodePlan) -> int:
    if node.iface.listen_port is None:  # the plan gives every node one; only clients have none
        raise ValueError(f"{node.name}: a node without a listen port")
    return node.iface.listen_port


# ----------------------------------------------------------------------------- JSON


def to_json(manifest: MeshManifest) -> dict[str, Any]:
    """Plain JSON data: keys are field names in field order, addresses as strings, tuples as lists."""
    doc = _encode(manifest)
    assert isinstance(doc, dict)
    return doc


def dumps(manifest: MeshManifest) -> str:
    """The text of mesh.json, as `make render` writes it."""
    return json.dumps(to_json(manifest), indent=2) + "\n"


def from_json(doc: object, where: str = MANIFEST_FILE) -> MeshManifest:
    """The manifest in `doc` (parsed JSON); ManifestError naming `where` and the field otherwise."""
    try:
        manifest = _decode(MeshManifest, doc, "")
    except _Mismatch as e:
        raise ManifestError(f"{where}: {e.field + ': ' if e.field else ''}{e.message}") from None
    assert isinstance(manifest, MeshManifest)
    return manifest


def load(path: Path) -> MeshManifest:
    """Read a mesh.json file strictly (see the module doc)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"{path}: not found (run `make render`)") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ManifestError(f"{path}: not JSON ({e.msg}, line {e.lineno})") from None
    return from_json(doc, str(path))


def _encode(value: object) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    if isinstance(value, _IP_TYPES):
        return str(value)
    return value


class _Mismatch(Exception):
    """Where (a field path such as `nodes[2].public_ip`) and how the document differs."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def _decode(tp: Any, value: object, field: str) -> Any:
    """`value` (parsed JSON) as type `tp` (a field type of the dataclasses above)."""
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        misses = []
        for option in options:
            try:
                return _decode(option, value, field)
            except _Mismatch as e:
                misses.append(e.message)
        if isinstance(value, str) and all(o in _IP_TYPES for o in options):
            raise _Mismatch(field, f"{value!r} is not an {' or '.join(o.__name__ for o in options)}")
        raise _Mismatch(field, " or ".join(dict.fromkeys(misses)))
    if origin is tuple:
        if not isinstance(value, list):
            raise _Mismatch(field, f"must be a list, got {_kind(value)}")
        return tuple(_decode(args[0], v, f"{field}[{i}]") for i, v in enumerate(value))
    if origin is Literal:
        if value not in args:
            raise _Mismatch(field, f"must be one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return _decode_dataclass(tp, value, field)
    if tp in _IP_TYPES:
        if not isinstance(value, str):
            raise _Mismatch(field, f"must be a string, got {_kind(value)}")
        try:
            return tp(value)
        except ValueError:
            raise _Mismatch(field, f"{value!r} is not an {tp.__name__}") from None
    if type(value) is tp:  # str, int, bool: `true` is no port and `1` no flag
        return value
    raise _Mismatch(field, f"must be {_NAMES.get(tp, str(tp))}, got {_kind(value)}")


def _decode_dataclass(cls: Any, value: object, field: str) -> Any:
    if not isinstance(value, dict):
        raise _Mismatch(field, f"must be an object, got {_kind(value)}")
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    prefix = f"{field}." if field else ""
    unknown = sorted(set(value) - set(names))
    if unknown:
        raise _Mismatch(f"{prefix}{unknown[0]}", "unknown field (render again: `make render`)")
    missing = [n for n in names if n not in value]
    if missing:
        raise _Mismatch(f"{prefix}{missing[0]}", "missing (render again: `make render`)")
    return cls(**{n: _decode(hints[n], value[n], f"{prefix}{n}") for n in names})


_NAMES = {str: "a string", int: "a whole number", bool: "true or false"}


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list"}.get(
        type(value), "an object" if isinstance(value, dict) else type(value).__name__
    )
