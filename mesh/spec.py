"""The user's stack config (`wgmesh:mesh`, `wgmesh:nodes`, `wgmesh:clients`) as frozen data.

`parse()` checks everything and reports every problem at once, each naming its config key,
so a user fixes a stack file in one round instead of one error per `pulumi preview`.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast

from mesh.errors import ConfigError, Problem

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Cloud = Literal["aws", "gcp", "hcloud", "lab"]
Topology = Literal["mesh", "hub"]

CLOUDS: tuple[Cloud, ...] = ("aws", "gcp", "hcloud", "lab")
IMAGES = ("ubuntu-24.04", "ubuntu-22.04", "debian-12")
HCLOUD_LOCATIONS = ("nbg1", "fsn1", "hel1", "ash", "hil", "sin")
DEFAULT_SIZE: dict[str, str] = {"aws": "t3.micro", "gcp": "e2-small", "hcloud": "cx22", "lab": "lab"}
# Largest packet the underlay carries without fragmenting, per cloud (GCP VPCs default to 1460).
UNDERLAY_MTU: dict[str, int] = {"aws": 1500, "gcp": 1460, "hcloud": 1500, "lab": 1500}
CLIENT_UNDERLAY_MTU = 1500
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
AWS_REGION_RE = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
GCP_REGION_RE = re.compile(r"^[a-z]+-[a-z]+\d+$")
SSH_KEY_RE = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com) [A-Za-z0-9+/=]+( .*)?$")


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
    live_updates: bool = False  # push changes to running nodes over SSH (day-2)
    ssh_user: str = "root"  # user the live-update path logs in as


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
    underlay_mtu: int = 1500
    key_epoch: int = 0  # bump to rotate this node's key (and its PSKs)
    index: int = 0  # position in wgmesh:nodes, for error messages

    @property
    def key(self) -> str:
        return f"wgmesh:nodes[{self.index}]"

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
    index: int = 0

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
