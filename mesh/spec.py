"""The user's stack config (`wgmesh:mesh`, `wgmesh:nodes`, `wgmesh:clients`) as frozen data.

`parse()` checks everything and reports every problem at once, each naming its config key,
so a user fixes a stack file in one round instead of one error per `pulumi preview`.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypeVar, cast

from mesh import network_rules, site_networks
from mesh.contracts import node_name_problems
from mesh.errors import ConfigError, Problem

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Cloud = Literal["aws", "gcp", "hcloud", "lab", "external"]
Topology = Literal["mesh", "hub"]
EndpointFamily = Literal["ipv4", "ipv6"]

CLOUDS: tuple[Cloud, ...] = ("aws", "gcp", "hcloud", "lab", "external")
ENDPOINT_FAMILIES: tuple[EndpointFamily, ...] = ("ipv4", "ipv6")
IMAGES = ("ubuntu-24.04", "ubuntu-22.04", "debian-12")
HCLOUD_LOCATIONS = ("nbg1", "fsn1", "hel1", "ash", "hil", "sin")
# Hetzner "": the cheapest current type offered in the location, asked of the cloud at preview
# (mesh/placement.py); Hetzner retires types (cx22 in 2025-12) and not every type is everywhere.
DEFAULT_SIZE: dict[str, str] = {
    "aws": "t3.micro",
    "gcp": "e2-small",
    "hcloud": "",
    "lab": "lab",
    "external": "",
}
# Largest packet the underlay carries without fragmenting, per cloud (GCP VPCs default to 1460).
UNDERLAY_MTU: dict[str, int] = {"aws": 1500, "gcp": 1460, "hcloud": 1500, "lab": 1500, "external": 1500}
CLIENT_UNDERLAY_MTU = 1500
NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,30}")
AWS_REGION_RE = re.compile(r"[a-z]{2}(-gov)?-[a-z]+-\d")
GCP_REGION_RE = re.compile(r"[a-z]+-[a-z]+\d+")
SSH_KEY_TYPES = r"ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com"
SSH_KEY_RE = re.compile(rf"({SSH_KEY_TYPES}) [A-Za-z0-9+/=]+( [^\n]*)?")
# Field metadata of what the parser fills in itself: no stack-file key (config_keys below).
NOT_CONFIG = {"config": False}
# ext (issue 15): an interface name Linux takes (dev_valid_name() in net/core/dev.c,
# https://elixir.bootlin.com/linux/v6.6/source/net/core/dev.c: shorter than IFNAMSIZ 16, no '/',
# ':' or whitespace, not "." or ".."), narrowed to characters safe inside the nft rule's quotes.
IFNAME_RE = re.compile(r"(?!\.{1,2}$)[A-Za-z0-9_.-]{1,15}")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# A DNS name (RFC 1123 labels, at most 253 characters); an all-digit last label is a bad IP, not a name.
DNS_NAME_RE = re.compile(rf"(?=.{{1,253}}$)({_LABEL}\.)*{_LABEL}\.?")


@dataclass(frozen=True)
class MeshSettings:
    """`wgmesh:mesh`: settings shared by the whole overlay."""

    cidr: ipaddress.IPv4Network
    cidr6: ipaddress.IPv6Network | None = None
    port: int = 51820
    topology: Topology = "mesh"
    keepalive: int = 25
    preshared_keys: bool = True
    admin_cidrs: tuple[IPNetwork, ...] = ()
    ssh_public_keys: tuple[str, ...] = ()
    key_epoch: int = 0  # bump to rotate every key and PSK in the mesh
    live_updates: bool = False  # push config changes to running nodes over SSH (day-2)
    ssh_user: str | None = None  # login user for live updates; None: the image's default user
    # Which static public IP nodes dial each other on (the WireGuard underlay). Roaming clients
    # always dial IPv4: phone and hotel networks are the ones still without IPv6.
    endpoints: EndpointFamily = "ipv4"
    # Sites (`aws-<region>`, `gcp-<region>`) whose existing network may be replaced, with every
    # VM in it, when the stack no longer keeps it (mesh/site_networks.py): an explicit opt-in.
    replace_networks: tuple[str, ...] = ()

    @property
    def public_ipv6(self) -> bool:
        """Whether every cloud node gets a static public IPv6: for the IPv6 overlay's traffic to
        the internet (`cidr6`) or as the address peers dial (`endpoints: ipv6`). Its firewall
        then lets ICMPv6 "packet too big" in, or IPv6 path-MTU discovery breaks."""
        return self.cidr6 is not None or self.endpoints == "ipv6"


@dataclass(frozen=True)
class Endpoint:
    """ext: where peers dial an external host: an IP literal or a DNS name, and a UDP port."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class NodeSpec:
    """One `wgmesh:nodes[i]` entry: a VM (or a lab host) that runs WireGuard."""

    name: str
    cloud: Cloud
    region: str = ""
    zone: str = ""
    size: str = ""
    image: str = "ubuntu-24.04"
    address: ipaddress.IPv4Address | None = None
    address6: ipaddress.IPv6Address | None = None
    subnets: tuple[IPNetwork, ...] = ()
    masquerade: bool = False
    hub: bool = False
    gateway: bool = False
    public_ip: ipaddress.IPv4Address | None = None  # lab only: fixed underlay address
    public_ip6: ipaddress.IPv6Address | None = None  # lab only: fixed IPv6 underlay address
    underlay_mtu: int = 1500
    key_epoch: int = 0  # bump to rotate this node's key (and its PSKs)
    ssh_host_key: str | None = None  # pinned SSH host key for live updates ("ssh-ed25519 AAAA...")
    # ---- ext (issue 15): `cloud: external` self-managed hosts (docs/patterns.md "Your own servers")
    # Where peers dial it (an IP or DNS name, and port); None: behind NAT, it dials its peers.
    endpoint: Endpoint | None = None
    lan_interface: str | None = None  # the interface `masquerade` NATs out of (e.g. wlp0s0f0)
    ssh_host: str | None = None  # live updates reach it here (an IP or DNS name); None: printed command
    # ---- end ext
    index: int = field(default=0, metadata=NOT_CONFIG)  # position in wgmesh:nodes, for error messages

    @property
    def key(self) -> str:
        return f"wgmesh:nodes[{self.index}]"

    @property
    def behind_nat(self) -> bool:
        """An external host with no `endpoint`: nobody can dial it, it dials its peers (keepalive)."""
        return self.cloud == "external" and self.endpoint is None

    @property
    def fixed_source(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        """An external host's endpoint when it is an IP literal: the one source its peers' firewalls
        admit. None for a DNS name or no endpoint (its address is unknown: they admit any)."""
        if self.endpoint is None:
            return None
        try:
            return ipaddress.ip_address(self.endpoint.host)
        except ValueError:
            return None

    @property
    def routes(self) -> bool:
        """Whether the node forwards packets that are not its own (needs ip_forward, no src/dst check)."""
        return bool(self.subnets) or self.hub or self.gateway


@dataclass(frozen=True)
class ClientSpec:
    """One `wgmesh:clients[i]` entry: a roaming peer with no VM (laptop, phone)."""

    name: str
    address: ipaddress.IPv4Address | None = None
    address6: ipaddress.IPv6Address | None = None
    full_tunnel: bool = False
    dns: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = ()
    underlay_mtu: int = CLIENT_UNDERLAY_MTU
    key_epoch: int = 0
    index: int = field(default=0, metadata=NOT_CONFIG)  # position in wgmesh:clients

    @property
    def key(self) -> str:
        return f"wgmesh:clients[{self.index}]"


@dataclass(frozen=True)
class MeshSpec:
    mesh: MeshSettings
    nodes: tuple[NodeSpec, ...]
    clients: tuple[ClientSpec, ...] = field(default=())

    def node(self, name: str) -> NodeSpec:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)


# ----------------------------------------------------------------------------- parsing


def config_key(field_name: str) -> str:
    """The stack file's camelCase key for a dataclass field: `public_ip6` -> `publicIp6`."""
    first, *rest = field_name.split("_")
    return first + "".join(word.capitalize() for word in rest)


def config_keys(cls: Any) -> dict[str, str]:
    """camelCase key -> field name, for every field of `cls` a stack file sets (not NOT_CONFIG ones)."""
    return {config_key(f.name): f.name for f in fields(cls) if f.metadata.get("config", True)}


MESH_KEYS = config_keys(MeshSettings)
NODE_KEYS = config_keys(NodeSpec)
CLIENT_KEYS = config_keys(ClientSpec)
MTU_RANGE = (1280, 9216)
SHORTEST_SUBNET = {4: 8, 6: 16}
T = TypeVar("T")


class _Reader:
    """Reads typed values out of untyped config, recording a Problem instead of raising."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def problem(self, key: str, message: str) -> None:
        self.problems.append(Problem(key, message))

    def mapping(self, value: object, key: str, allowed: Mapping[str, str]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.problem(key, f"must be a mapping, got {_kind(value)}")
            return {}
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str) or k not in allowed:
                hint = difflib.get_close_matches(str(k), list(allowed), n=1)
                tip = f" (did you mean '{hint[0]}'?)" if hint else f" (known: {', '.join(sorted(allowed))})"
                path = f"{key}.{k}" if isinstance(k, str) and re.fullmatch(r"\w+", k) else f"{key}[{k!r}]"
                self.problem(path, f"unknown key{tip}")
                continue
            out[k] = v
        return out

    def typed(self, raw: Mapping[str, Any], name: str, key: str, kind: type[T], default: T) -> T:
        value = raw.get(name, default)
        if value is None:
            return default
        # bool is an int in Python; keep them apart so `port: true` is an error.
        if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            return value
        self.problem(f"{key}.{name}", f"must be {_kind_name(kind)}, got {_kind(value)}")
        return default

    def required(self, raw: Mapping[str, Any], name: str, key: str, why: str) -> str | None:
        """A string that must be present and non-empty: missing, empty and mistyped are told apart."""
        value = raw.get(name)
        if value is None or value == "":
            self.problem(f"{key}.{name}", f"is required{why}")
            return None
        if not isinstance(value, str):
            self.problem(f"{key}.{name}", f"must be a string, got {_kind(value)}")
            return None
        return value

    def int_in(self, raw: Mapping[str, Any], name: str, key: str, default: int, lo: int, hi: int) -> int:
        value = self.typed(raw, name, key, int, default)
        if not lo <= value <= hi:
            self.problem(f"{key}.{name}", f"{value} is out of range {lo}..{hi}")
            return default
        return value

    def choice(
        self, raw: Mapping[str, Any], name: str, key: str, choices: Sequence[str], default: str
    ) -> str:
        value = self.typed(raw, name, key, str, default)
        if value not in choices:
            self.problem(f"{key}.{name}", f"{value!r} is not one of {', '.join(choices)}")
            return default
        return value

    def str_list(self, raw: Mapping[str, Any], name: str, key: str) -> list[tuple[str, str]]:
        """(item key, item) pairs of a list of strings; non-strings are reported."""
        value = raw.get(name)
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem(f"{key}.{name}", f"must be a list, got {_kind(value)}")
            return []
        out = []
        for i, item in enumerate(value):
            if isinstance(item, str):
                out.append((f"{key}.{name}[{i}]", item))
            else:
                self.problem(f"{key}.{name}[{i}]", f"must be a string, got {_kind(item)}")
        return out

    def parsed(self, key: str, text: str, fn: Callable[[str], T], what: str) -> T | None:
        try:
            return fn(text)
        except ValueError as e:
            self.problem(key, f"{text!r} is not a valid {what} ({_reason(e)})")
            return None


def _kind(value: object) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list"}.get(
        type(value), "a mapping" if isinstance(value, Mapping) else type(value).__name__
    )


def _kind_name(kind: type) -> str:
    return {bool: "true or false", int: "a whole number", str: "a string"}.get(kind, kind.__name__)


def _reason(e: ValueError) -> str:
    msg = str(e)
    return msg if len(msg) < 80 else msg[:77] + "..."


def _network(text: str) -> IPNetwork:
    return ipaddress.ip_network(text, strict=True)


CONFIG_SECTIONS = ("mesh", "nodes", "clients", "quotas")  # quotas: components/quota_config.py
# Stack config keys read on their own (not sections of the spec): kept as Pulumi secrets.
SSH_PRIVATE_KEY_CONFIG = "sshPrivateKey"
SECRET_CONFIG_KEYS = (SSH_PRIVATE_KEY_CONFIG,)
# Written by tools (not by hand): `pushed` records what `make push` sent to which VM (components/stale.py).
PUSHED_CONFIG = "pushed"
TOOL_CONFIG_KEYS = (PUSHED_CONFIG,)
# The user cloud-init gives `ssh_authorized_keys` on each cloud's images (AWS: the AMI's
# documented login; GCP Ubuntu images: cloud-init's default user; Hetzner: root).
DEFAULT_SSH_USER: dict[tuple[str, str], str] = {
    **{("aws", image): "ubuntu" for image in IMAGES if image.startswith("ubuntu")},
    ("aws", "debian-12"): "admin",
    **{("gcp", image): "ubuntu" for image in IMAGES if image.startswith("ubuntu")},
    **{("hcloud", image): "root" for image in IMAGES},
}
USER_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


def image_user(node: NodeSpec) -> str:
    """The user the node's image always has, with the admin keys from first boot (`-peers` logs in as it).

    It exists before any apply ran, so the first apply can create `sshUser`.
    """
    return DEFAULT_SSH_USER.get((node.cloud, node.image), "root")


def login_user(mesh: MeshSettings, node: NodeSpec) -> str:
    """Who live updates log in as on `node`: `sshUser` when set, else its image's default user."""
    return mesh.ssh_user or image_user(node)


def unknown_config_keys(keys: Iterable[str]) -> list[Problem]:
    """`wgmesh:*` stack config keys that are not ours: a misspelled `wgmesh:client` is not ignored."""
    names = (*CONFIG_SECTIONS, *SECRET_CONFIG_KEYS, *TOOL_CONFIG_KEYS)
    known = [f"wgmesh:{s}" for s in names]
    problems = []
    for k in sorted(keys):
        if k.startswith("wgmesh:") and k not in known:
            hint = difflib.get_close_matches(k.removeprefix("wgmesh:"), names, n=1)
            tip = f" (did you mean 'wgmesh:{hint[0]}'?)" if hint else f" (known: {', '.join(known)})"
            problems.append(Problem(k, f"unknown config key{tip}"))
    return problems


def parse(config: Mapping[str, Any]) -> MeshSpec:
    """Parse and validate `{"mesh": ..., "nodes": [...], "clients": [...]}` (the wgmesh:* values).

    Raises ConfigError listing every problem, each naming its fully qualified key.
    """
    r = _Reader()
    mesh = _parse_mesh(r, config.get("mesh"))
    raw_nodes = config.get("nodes")
    if raw_nodes is None or raw_nodes == []:
        r.problem("wgmesh:nodes", "at least one node is required")
        raw_nodes = []
    elif not isinstance(raw_nodes, list):
        r.problem("wgmesh:nodes", f"must be a list, got {_kind(raw_nodes)}")
        raw_nodes = []
    raw_clients = config.get("clients")
    if raw_clients is None:
        raw_clients = []
    elif not isinstance(raw_clients, list):
        r.problem("wgmesh:clients", f"must be a list, got {_kind(raw_clients)}")
        raw_clients = []
    nodes = tuple(n for i, v in enumerate(raw_nodes) if (n := _parse_node(r, mesh, i, v)) is not None)
    clients = tuple(c for i, v in enumerate(raw_clients) if (c := _parse_client(r, mesh, i, v)) is not None)
    if mesh is not None:
        _check_members(r, mesh, nodes, clients)
    if r.problems or mesh is None:
        raise ConfigError(sorted(set(r.problems), key=lambda p: (_key_order(p.key), p.message)))
    return MeshSpec(mesh=mesh, nodes=nodes, clients=clients)


def _key_order(key: str) -> tuple[object, ...]:
    """Sort problems in file order: mesh first, then nodes[i], clients[i], numerically."""
    parts = re.split(r"\[([0-9]+)\]", key)  # odd positions are the captured list indexes
    section = {"wgmesh:mesh": 0, "wgmesh:nodes": 1, "wgmesh:clients": 2}.get(parts[0].split(".")[0], 3)
    return (section, *[(int(p) if i % 2 else p) for i, p in enumerate(parts)])


def _parse_mesh(r: _Reader, value: object) -> MeshSettings | None:
    key = "wgmesh:mesh"
    if value is None:
        r.problem(key, "is required (at least `cidr`)")
        return None
    raw = r.mapping(value, key, MESH_KEYS)
    if not isinstance(value, Mapping):
        return None
    cidr_text = r.required(raw, "cidr", key, " (the overlay IPv4 network, e.g. 10.77.0.0/24)")
    cidr = _overlay_network(r, f"{key}.cidr", cidr_text, 4, 30, " (use cidr6 for IPv6)")
    cidr6_text = r.typed(raw, "cidr6", key, str, "")
    cidr6 = _overlay_network(r, f"{key}.cidr6", cidr6_text, 6, 120, "")
    admin_keyed: list[tuple[str, IPNetwork]] = []
    for k, text in r.str_list(raw, "adminCidrs", key):
        net = r.parsed(k, text, _network, "CIDR")
        if net is not None:
            admin_keyed.append((k, net))
    admin = [net for _, net in admin_keyed]
    ssh_keyed: list[tuple[str, str]] = []
    for k, text in r.str_list(raw, "sshPublicKeys", key):
        if SSH_KEY_RE.fullmatch(text.strip()):
            ssh_keyed.append((k, text.strip()))
        else:
            r.problem(k, "is not an OpenSSH public key ('ssh-ed25519 AAAA...')")
    ssh_keys = [text for _, text in ssh_keyed]
    r.problems += network_rules.duplicate_admin_cidr_problems(admin_keyed)
    r.problems += network_rules.duplicate_ssh_key_problems(ssh_keyed)
    live = r.typed(raw, "liveUpdates", key, bool, False)
    if live and not admin:
        r.problem(f"{key}.liveUpdates", "needs adminCidrs: live updates reach nodes over SSH")
    if live and not ssh_keys:
        r.problem(f"{key}.liveUpdates", "needs sshPublicKeys: live updates log in with an SSH key")
    ssh_user = r.typed(raw, "sshUser", key, str, "")
    if isinstance(raw.get("sshUser"), str) and not USER_RE.fullmatch(ssh_user):
        r.problem(f"{key}.sshUser", f"{ssh_user!r} is not a valid user name")
    settings = MeshSettings(
        cidr=cidr or ipaddress.IPv4Network("10.77.0.0/24"),
        cidr6=cidr6,
        port=r.int_in(raw, "port", key, 51820, 1, 65535),
        topology=cast(Topology, r.choice(raw, "topology", key, ("mesh", "hub"), "mesh")),
        keepalive=r.int_in(raw, "keepalive", key, 25, 0, 65535),
        preshared_keys=r.typed(raw, "presharedKeys", key, bool, True),
        admin_cidrs=tuple(admin),
        ssh_public_keys=tuple(ssh_keys),
        key_epoch=r.int_in(raw, "keyEpoch", key, 0, 0, 2**31),
        live_updates=live,
        ssh_user=ssh_user or None,
        endpoints=cast(EndpointFamily, r.choice(raw, "endpoints", key, ENDPOINT_FAMILIES, "ipv4")),
        replace_networks=tuple(text for _, text in r.str_list(raw, "replaceNetworks", key)),
    )
    return settings if cidr is not None else None


def _overlay_network(r: _Reader, key: str, text: str | None, version: int, longest: int, hint: str) -> Any:
    """An overlay network of one IP version, large enough to hold a mesh; None if absent or bad."""
    if not text:
        return None
    net = r.parsed(key, text, _network, "network")
    if net is None:
        return None
    if net.version != version:
        r.problem(key, f"{text!r} must be an IPv{version} network{hint}")
        return None
    if net.prefixlen > longest:
        r.problem(key, f"{text!r} is too small: use a /{longest} or larger")
        return None
    return net


def _name(r: _Reader, raw: Mapping[str, Any], key: str) -> str | None:
    name = r.required(raw, "name", key, "")
    if name is None:
        return None
    if not NAME_RE.fullmatch(name):
        r.problem(f"{key}.name", f"{name!r} must match [a-z][a-z0-9-]{{0,30}}")
        return None
    return name


def _address(r: _Reader, raw: Mapping[str, Any], name: str, key: str, net: IPNetwork | None, v: int) -> Any:
    text = r.typed(raw, name, key, str, "")
    if not text:
        return None
    addr = r.parsed(f"{key}.{name}", text, ipaddress.ip_address, f"IPv{v} address")
    if addr is None:
        return None
    if addr.version != v:
        r.problem(f"{key}.{name}", f"{text!r} must be an IPv{v} address")
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.scope_id is not None:
        r.problem(f"{key}.{name}", f"{text!r} has a scope (%zone): overlay addresses are global")
        return None
    if net is None:
        r.problem(f"{key}.{name}", "needs wgmesh:mesh.cidr6 (IPv6 overlay) to be set")
        return None
    if addr not in net:
        cidr_key = "cidr" if v == 4 else "cidr6"
        r.problem(f"{key}.{name}", f"{addr} is outside wgmesh:mesh.{cidr_key} {net}")
        return None
    if addr == net.network_address or (v == 4 and addr == net.broadcast_address):
        r.problem(f"{key}.{name}", f"{addr} is the network or broadcast address of {net}")
        return None
    return addr


def _parse_node(r: _Reader, mesh: MeshSettings | None, i: int, value: object) -> NodeSpec | None:
    key = f"wgmesh:nodes[{i}]"
    if not isinstance(value, Mapping):
        r.problem(key, f"must be a mapping, got {_kind(value)}")
        return None
    raw = r.mapping(value, key, NODE_KEYS)
    name = _name(r, raw, key)
    cloud_text = r.required(raw, "cloud", key, f" ({', '.join(CLOUDS)})")
    cloud: Cloud | None = None
    if cloud_text is None:
        pass
    elif cloud_text not in CLOUDS:
        hint = difflib.get_close_matches(cloud_text, CLOUDS, n=1)
        tip = f" (did you mean '{hint[0]}'?)" if hint else ""
        r.problem(f"{key}.cloud", f"unknown cloud {cloud_text!r}: use one of {', '.join(CLOUDS)}{tip}")
    else:
        cloud = cloud_text  # narrowed to Cloud by the `in CLOUDS` check
    region = r.typed(raw, "region", key, str, "")
    zone = r.typed(raw, "zone", key, str, "")
    image = r.choice(raw, "image", key, IMAGES, "ubuntu-24.04")
    size = r.typed(raw, "size", key, str, "")
    if cloud is not None:
        _check_placement(r, key, cloud, region, zone, image, raw)
    if name is not None and cloud is not None:
        for reason in node_name_problems(name, cloud):  # names the clouds derive from it
            r.problem(f"{key}.name", reason)
    public_ip = None
    pip_text = r.typed(raw, "publicIp", key, str, "")
    if raw.get("publicIp") not in (None, "") and not pip_text:
        pass  # wrong type, already reported
    elif pip_text:
        if cloud == "external":
            r.problem(
                f"{key}.publicIp", "`cloud: external` nodes take `endpoint` (an IP or DNS name, and port)"
            )
        elif cloud not in (None, "lab"):
            r.problem(
                f"{key}.publicIp", f"only `cloud: lab` nodes take a fixed publicIp; {cloud} assigns one"
            )
        else:
            addr = r.parsed(f"{key}.publicIp", pip_text, ipaddress.ip_address, "IP address")
            if addr is not None and addr.version != 4:
                r.problem(f"{key}.publicIp", f"{pip_text!r} must be an IPv4 address")
            elif isinstance(addr, ipaddress.IPv4Address):
                public_ip = addr
    elif cloud == "lab":
        r.problem(f"{key}.publicIp", "is required for `cloud: lab` nodes (the lab underlay address)")
    public_ip6 = _public_ip6(r, raw, key, cloud, mesh)
    subnets: list[IPNetwork] = []
    for k, text in r.str_list(raw, "subnets", key):
        net = r.parsed(k, text, _network, "network")
        if net is None:
            continue
        shortest = SHORTEST_SUBNET[net.version]
        if net.prefixlen < shortest:
            # Peers' endpoints would route into wg0; internet egress is `gateway`, not a subnet.
            r.problem(k, f"{net} is too broad to route behind a node: use /{shortest} or longer")
        else:
            subnets.append(net)
    masquerade = r.typed(raw, "masquerade", key, bool, False)
    if masquerade and not raw.get("subnets"):
        r.problem(f"{key}.masquerade", "needs subnets: masquerade NATs mesh traffic into them")
    endpoint, lan_interface, ssh_host = _external_fields(r, raw, key, cloud, masquerade, mesh)
    hub = r.typed(raw, "hub", key, bool, False)
    if hub and mesh is not None and mesh.topology != "hub":
        r.problem(f"{key}.hub", "needs wgmesh:mesh.topology: hub")
    default_mtu = UNDERLAY_MTU.get(cloud or "lab", 1500)
    node = NodeSpec(
        name=name or f"node{i}",
        cloud=cloud or "lab",
        region=region,
        zone=zone,  # GCP: "" picks an UP zone offering the size at preview (not every region has -a)
        size=size or DEFAULT_SIZE.get(cloud or "lab", ""),
        image=image,
        address=_address(r, raw, "address", key, mesh.cidr if mesh else None, 4) if mesh else None,
        address6=_address(r, raw, "address6", key, mesh.cidr6 if mesh else None, 6) if mesh else None,
        subnets=tuple(subnets),
        masquerade=masquerade,
        hub=hub,
        gateway=r.typed(raw, "gateway", key, bool, False),
        public_ip=public_ip,
        public_ip6=public_ip6,
        underlay_mtu=r.int_in(raw, "underlayMtu", key, default_mtu, *MTU_RANGE),
        key_epoch=r.int_in(raw, "keyEpoch", key, 0, 0, 2**31),
        ssh_host_key=_host_key(r, raw, key),
        endpoint=endpoint,
        lan_interface=lan_interface,
        ssh_host=ssh_host,
        index=i,
    )
    return node if name is not None and cloud is not None else None


# ---- ext (issue 15): `cloud: external` fields


def _external_fields(
    r: _Reader,
    raw: Mapping[str, Any],
    key: str,
    cloud: Cloud | None,
    masquerade: bool,
    mesh: MeshSettings | None,
) -> tuple[Endpoint | None, str | None, str | None]:
    """`endpoint`, `lanInterface` and `sshHost`: only self-managed hosts take them."""
    texts = {k: r.typed(raw, k, key, str, "").strip() for k in ("endpoint", "lanInterface", "sshHost")}
    if cloud not in (None, "external"):
        for k, text in texts.items():
            if text:
                r.problem(f"{key}.{k}", f"only `cloud: external` nodes take {k}; {cloud} creates the VM")
        return None, None, None
    endpoint = None
    if texts["endpoint"]:
        endpoint = _endpoint(r, f"{key}.endpoint", texts["endpoint"], mesh.port if mesh else 51820)
    lan = texts["lanInterface"] or None
    if lan is not None and not IFNAME_RE.fullmatch(lan):
        r.problem(f"{key}.lanInterface", f"{lan!r} is not a Linux interface name (1-15 of A-Za-z0-9_.-)")
        lan = None
    elif cloud == "external" and masquerade and not texts["lanInterface"]:
        r.problem(
            f"{key}.lanInterface",
            "is required with masquerade on `cloud: external` nodes: "
            "the LAN interface to NAT out of (e.g. wlp0s0f0)",
        )
    if lan is not None and not masquerade:
        r.problem(
            f"{key}.lanInterface", "needs masquerade: true (it names the interface masquerade NATs out of)"
        )
    ssh_host = texts["sshHost"] or None
    if ssh_host is not None and not _is_host(ssh_host):
        r.problem(f"{key}.sshHost", f"{ssh_host!r} is neither an IP address nor a DNS name")
        ssh_host = None
    return endpoint, lan, ssh_host


def _is_host(text: str) -> bool:
    """An IP literal (no %zone) or a DNS name; `10.0.0.256` is neither."""
    try:
        return ipaddress.ip_address(text).version in (4, 6) and "%" not in text
    except ValueError:
        return bool(DNS_NAME_RE.fullmatch(text)) and not text.rstrip(".").rsplit(".", 1)[-1].isdigit()


def _endpoint(r: _Reader, key: str, text: str, default_port: int) -> Endpoint | None:
    """`host`, `host:port`, `[v6]:port` or a bare IPv6; the port defaults to the mesh's.

    wg(8) takes an Endpoint as "an IP or hostname, followed by a colon, and then a port number",
    IPv6 in brackets (parse_endpoint in wireguard-tools src/config.c); the render writes it so.
    """
    host, port_text = text, ""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            r.problem(key, f"{text!r} is not `[IPv6]:port`")
            return None
        port_text = rest[1:] if rest else ""
        if not port_text and rest:
            port_text = "-"  # `[v6]:` with no port
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        if not port_text:
            port_text = "-"
    port = default_port
    if port_text:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            r.problem(key, f"{text!r}: the port must be a number in 1..65535")
            return None
        port = int(port_text)
    if not _is_host(host):
        r.problem(key, f"{text!r}: {host!r} is neither an IP address nor a DNS name")
        return None
    if text.startswith("[") and ":" not in host:
        r.problem(key, f"{text!r}: brackets are for IPv6 addresses only")
        return None
    return Endpoint(host.rstrip("."), port)


def _check_behind_nat(
    r: _Reader, mesh: MeshSettings, nodes: tuple[NodeSpec, ...], clients: tuple[ClientSpec, ...]
) -> None:
    """A host behind NAT only dials: whatever must dial it (spokes to a hub, another NAT'd host in
    a full mesh, full-tunnel clients to their gateway) could never reach it."""
    nat = [n for n in nodes if n.behind_nat]
    why = "it is behind NAT (no endpoint): give it an `endpoint` its peers can dial"
    for n in nat:
        if n.hub:
            r.problem(f"{n.key}.hub", f"spokes cannot dial this hub: {why}")
        if n.gateway and any(c.full_tunnel for c in clients):
            r.problem(f"{n.key}.gateway", f"full-tunnel clients cannot dial this gateway: {why}")
    if mesh.topology == "mesh" and len(nat) > 1:
        for n in nat[1:]:
            r.problem(
                f"{n.key}.endpoint",
                f"is required: {nat[0].key} '{nat[0].name}' is behind NAT too, and two hosts that only "
                "dial cannot reach each other (or use topology: hub with a hub both can dial)",
            )


# ---- end ext


def _public_ip6(
    r: _Reader, raw: Mapping[str, Any], key: str, cloud: Cloud | None, mesh: MeshSettings | None
) -> ipaddress.IPv6Address | None:
    """A lab node's fixed IPv6 underlay address (`publicIp6`); required with `endpoints: ipv6`.

    Cloud nodes get theirs from the cloud (a static address per cloud, see components/).
    """
    k = f"{key}.publicIp6"
    text = r.typed(raw, "publicIp6", key, str, "")
    if raw.get("publicIp6") not in (None, "") and not text:
        return None  # wrong type, already reported
    if not text:
        if cloud == "lab" and mesh is not None and mesh.endpoints == "ipv6":
            r.problem(k, "is required for `cloud: lab` nodes with wgmesh:mesh.endpoints: ipv6")
        return None
    if cloud not in (None, "lab"):
        r.problem(k, f"only `cloud: lab` nodes take a fixed publicIp6; {cloud} assigns one")
        return None
    addr = r.parsed(k, text, ipaddress.ip_address, "IP address")
    if addr is None:
        return None
    if not isinstance(addr, ipaddress.IPv6Address):
        r.problem(k, f"{text!r} must be an IPv6 address")
        return None
    if addr.scope_id is not None or addr.is_link_local or addr.is_multicast or addr.is_unspecified:
        r.problem(k, f"{text!r} must be a unicast address a peer can route to (no link-local, no %zone)")
        return None
    return addr


def _host_key(r: _Reader, raw: Mapping[str, Any], key: str) -> str | None:
    """A pinned SSH host key (`sshHostKey`), as in known_hosts without the host name."""
    text = r.typed(raw, "sshHostKey", key, str, "").strip()
    if not text:
        return None
    if not SSH_KEY_RE.fullmatch(text):
        r.problem(f"{key}.sshHostKey", "is not an SSH host public key ('ssh-ed25519 AAAA...')")
        return None
    return text


def _check_placement(
    r: _Reader, key: str, cloud: Cloud, region: str, zone: str, image: str, raw: Mapping[str, Any]
) -> None:
    if cloud in ("lab", "external"):
        for k in ("region", "zone", *(("size", "image") if cloud == "external" else ())):
            if raw.get(k):
                r.problem(f"{key}.{k}", f"does not apply to `cloud: {cloud}` nodes")
        return
    if not region:
        if not isinstance(raw.get("region"), str | None):
            return  # wrong type, already reported
        r.problem(f"{key}.region", f"is required for cloud {cloud}")
    elif cloud == "aws" and not AWS_REGION_RE.fullmatch(region):
        r.problem(f"{key}.region", f"{region!r} is not an AWS region (e.g. eu-central-1)")
    elif cloud == "gcp" and not GCP_REGION_RE.fullmatch(region):
        r.problem(f"{key}.region", f"{region!r} is not a GCP region (e.g. europe-west3)")
    elif cloud == "hcloud" and region not in HCLOUD_LOCATIONS:
        r.problem(f"{key}.region", f"{region!r} is not a Hetzner location ({', '.join(HCLOUD_LOCATIONS)})")
    if zone and cloud != "gcp":
        r.problem(f"{key}.zone", f"only GCP nodes take a zone; {cloud} uses region")
    elif zone and region and not zone.startswith(region + "-"):
        r.problem(f"{key}.zone", f"{zone!r} is not a zone of region {region}")
    if cloud == "gcp" and image == "debian-12":
        r.problem(f"{key}.image", "debian-12 is not supported on gcp: GCP's Debian images ship no cloud-init")


def _parse_client(r: _Reader, mesh: MeshSettings | None, i: int, value: object) -> ClientSpec | None:
    key = f"wgmesh:clients[{i}]"
    if not isinstance(value, Mapping):
        r.problem(key, f"must be a mapping, got {_kind(value)}")
        return None
    raw = r.mapping(value, key, CLIENT_KEYS)
    name = _name(r, raw, key)
    dns: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for k, text in r.str_list(raw, "dns", key):
        addr = r.parsed(k, text, ipaddress.ip_address, "IP address")
        if addr is not None:
            dns.append(addr)
    client = ClientSpec(
        name=name or f"client{i}",
        address=_address(r, raw, "address", key, mesh.cidr if mesh else None, 4) if mesh else None,
        address6=_address(r, raw, "address6", key, mesh.cidr6 if mesh else None, 6) if mesh else None,
        full_tunnel=r.typed(raw, "fullTunnel", key, bool, False),
        dns=tuple(dns),
        underlay_mtu=r.int_in(raw, "underlayMtu", key, CLIENT_UNDERLAY_MTU, *MTU_RANGE),
        key_epoch=r.int_in(raw, "keyEpoch", key, 0, 0, 2**31),
        index=i,
    )
    return client if name is not None else None


def _check_members(
    r: _Reader, mesh: MeshSettings, nodes: tuple[NodeSpec, ...], clients: tuple[ClientSpec, ...]
) -> None:
    """Rules that relate members to each other: unique names and addresses, disjoint subnets."""
    seen_names: dict[str, str] = {}
    seen_addrs: dict[object, str] = {}
    members: list[NodeSpec | ClientSpec] = [*nodes, *clients]
    for m in members:
        if m.name in seen_names:
            r.problem(f"{m.key}.name", f"'{m.name}' is already used by {seen_names[m.name]}")
        else:
            seen_names[m.name] = m.key
        for attr in ("address", "address6"):
            addr = getattr(m, attr)
            if addr is None:
                continue
            if addr in seen_addrs:
                r.problem(f"{m.key}.{attr}", f"{addr} is already used by {seen_addrs[addr]}")
            else:
                seen_addrs[addr] = f"{m.key}.{attr}"
    seen_ips: dict[object, str] = {}
    for n in nodes:
        for attr, ip in (("publicIp", n.public_ip), ("publicIp6", n.public_ip6)):
            if ip is None:
                continue
            if ip in seen_ips:
                r.problem(f"{n.key}.{attr}", f"{ip} is already used by {seen_ips[ip]}")
            else:
                seen_ips[ip] = f"{n.key}.{attr}"
    overlays: list[tuple[str, IPNetwork]] = [("wgmesh:mesh.cidr", mesh.cidr)]
    if mesh.cidr6 is not None:
        overlays.append(("wgmesh:mesh.cidr6", mesh.cidr6))
    routed: list[tuple[str, IPNetwork]] = []
    for n in nodes:
        for j, net in enumerate(n.subnets):
            k = f"{n.key}.subnets[{j}]"
            clash = next(
                (ok for ok, o in (*overlays, *routed) if o.version == net.version and o.overlaps(net)), None
            )
            if clash is not None:
                other = next(o for ok, o in (*overlays, *routed) if ok == clash)
                r.problem(k, f"{net} overlaps {clash} ({other})")
            else:
                routed.append((k, net))
    for k, net in routed:
        for n in nodes:
            for attr, ip in (("publicIp", n.public_ip), ("publicIp6", n.public_ip6)):
                if ip is not None and ip.version == net.version and ip in net:
                    r.problem(k, f"{net} contains {n.key}.{attr} {ip}: its tunnel would route into itself")
    r.problems += network_rules.special_range_problems(network_rules.routed_networks(mesh, nodes))
    r.problems += network_rules.endpoint_problems(mesh, nodes)
    r.problems += network_rules.ipv6_mtu_problems(mesh, members)
    r.problems += network_rules.site_network_problems(mesh, nodes)
    r.problems += site_networks.replace_networks_problems(mesh, nodes)
    _check_behind_nat(r, mesh, nodes, clients)
    if mesh.topology == "hub" and nodes and not any(n.hub for n in nodes):
        r.problem("wgmesh:mesh.topology", "hub needs at least one node with `hub: true`")
    for c in clients:
        if c.full_tunnel and not any(n.gateway for n in nodes):
            r.problem(f"{c.key}.fullTunnel", "needs a node with `gateway: true` to send the internet through")
