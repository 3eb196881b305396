"""Public entry points: a node's #cloud-config, a client's wg conf, and user data sized for a cloud.

Inputs are the plan, resolved keys and the nodes' static public IPs (`endpoints`: node name ->
IPv4; `endpoints6`: node name -> IPv6, read only for node-to-node peers when the mesh has
`endpoints: ipv6`); outputs are plain strings the caller must treat as secret (they hold
private keys and PSKs).
"""

from __future__ import annotations

import base64
import gzip
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from cloudinit import host
from cloudinit.access import created_user
from cloudinit.bundle import host_files, ipv6_forwarding
from cloudinit.cloudconfig import dump_cloud_config, node_cloud_config
from cloudinit.wireguard import format_endpoint, render_wg_conf
from mesh.errors import RenderError
from mesh.keys import NodeKeys
from mesh.plan_types import InterfacePlan, MeshPlan, NodePlan
from mesh.spec import Endpoint, IPNetwork

# Largest user data each cloud accepts, in bytes (None: no limit). AWS counts the decoded
# bytes of user_data_base64, so a gzip payload is measured before base64.
USER_DATA_LIMITS: dict[str, int | None] = {
    "aws": 16384,
    "hcloud": 32768,
    "gcp": 262144,
    "lab": None,
    "external": None,  # ext: written by hand or the installer, no metadata service limit
}
# Clouds that take gzip user data (AWS `user_data_base64`): the whole document is compressed.
GZIPPED_CLOUDS = frozenset({"aws"})
# What to do when a node's user data cannot fit: said in every size error.
TOO_BIG_ADVICE = (
    "use `topology: hub` in wgmesh:mesh (spokes then carry only the hubs as peers) "
    "or split the mesh into smaller stacks"
)


@dataclass(frozen=True)
class EncodedUserData:
    """User data as a cloud takes it: `text` (plain) or `gzip_b64` (AWS `user_data_base64`).

    `raw_bytes` is the size of the plain document, `sent_bytes` the size counted against the
    cloud's limit (the gzip bytes when compressed). The repr never shows content.
    """

    text: str | None
    gzip_b64: str | None
    raw_bytes: int
    sent_bytes: int

    def __repr__(self) -> str:
        form = "gzip" if self.gzip_b64 is not None else "plain"
        return f"EncodedUserData({form}, raw_bytes={self.raw_bytes}, sent_bytes={self.sent_bytes})"


def node_wg_conf(
    plan: MeshPlan,
    name: str,
    keys: NodeKeys,
    endpoints: Mapping[str, str],
    endpoints6: Mapping[str, str] | None = None,
) -> str:
    """The node's wg0.conf (also what a live update feeds to the apply script in cloudinit/sync.py)."""
    node = plan.node(name)
    return render_wg_conf(
        node.iface,
        keys,
        _peer_endpoints(plan, node.iface, endpoints, endpoints6),
        post_up=[host.nft_load_command()],
        post_down=[host.nft_remove_command()],
    )


def node_user_data(
    plan: MeshPlan,
    name: str,
    keys: NodeKeys,
    endpoints: Mapping[str, str],
    endpoints6: Mapping[str, str] | None = None,
    *,
    compress_wg_conf: bool | None = None,
) -> str:
    """The node's exact `#cloud-config` text.

    Readable (wg0.conf as text) while it fits the node's cloud; beyond that, wg0.conf goes
    as cloud-init `gz+b64`, so a full mesh with PSKs still boots from user data alone on the
    clouds that take no compressed user data (Hetzner, GCP). AWS gzips the whole document
    instead (`encode_for_cloud`), which is at least as small. `compress_wg_conf` True/False
    forces one form (tests, the bench); None chooses as above.
    """
    conf = node_wg_conf(plan, name, keys, endpoints, endpoints6)
    return node_user_data_from_conf(plan, name, conf, compress_wg_conf)


def node_user_data_from_conf(
    plan: MeshPlan, name: str, wg_conf: str, compress_wg_conf: bool | None = None
) -> str:
    """`node_user_data` around an already rendered wg0.conf (the program renders each once)."""
    node = plan.node(name)
    if compress_wg_conf is not None:
        return _node_document(plan, node, wg_conf, compress_wg_conf=compress_wg_conf)
    text = _node_document(plan, node, wg_conf, compress_wg_conf=False)
    limit = USER_DATA_LIMITS.get(node.cloud)
    if limit is None or node.cloud in GZIPPED_CLOUDS or len(text.encode()) <= limit:
        return text
    return _node_document(plan, node, wg_conf, compress_wg_conf=True)


def _node_document(plan: MeshPlan, node: NodePlan, wg_conf: str, *, compress_wg_conf: bool) -> str:
    doc = node_cloud_config(
        hostname=node.name,
        files=host_files(plan, node.name, wg_conf),
        create_user=created_user(plan, node.name),
        compress_wg_conf=compress_wg_conf,
        ipv6_forwarding=ipv6_forwarding(plan),
    )
    return dump_cloud_config(doc)


def client_config(
    plan: MeshPlan,
    name: str,
    keys: NodeKeys,
    endpoints: Mapping[str, str],
    endpoints6: Mapping[str, str] | None = None,
) -> str:
    """A roaming client's wg conf (for the WireGuard apps and wg-quick).

    It dials the nodes' IPv4 whatever `endpoints` says: `endpoints6` is accepted (one signature
    with node_wg_conf) and never read.
    """
    client = plan.client(name)
    peer_endpoints = _peer_endpoints(plan, client.iface, endpoints, endpoints6)
    return render_wg_conf(client.iface, keys, peer_endpoints, dns=client.dns)


def encode_for_cloud(user_data: str, cloud: str, node: str) -> EncodedUserData:
    """Fit user data into the cloud's limit: plain when it fits, gzip on AWS, else RenderError.

    The error names node, cloud, size and limit only: the user data holds private keys.
    """
    if cloud not in USER_DATA_LIMITS:
        raise RenderError(f"{node}: no user data limit known for cloud {cloud!r}")
    limit = USER_DATA_LIMITS[cloud]
    raw = user_data.encode()
    if limit is None or len(raw) <= limit:
        return EncodedUserData(text=user_data, gzip_b64=None, raw_bytes=len(raw), sent_bytes=len(raw))
    if cloud not in GZIPPED_CLOUDS:
        raise RenderError(
            f"{node}: user data is {len(raw)} bytes, over the {limit}-byte limit of {cloud}; {TOO_BIG_ADVICE}"
        )
    packed = gzip.compress(raw, compresslevel=9, mtime=0)  # mtime=0: same input, same bytes
    if len(packed) > limit:
        raise RenderError(
            f"{node}: user data is {len(raw)} bytes ({len(packed)} gzipped), "
            f"over the {limit}-byte limit of {cloud}; {TOO_BIG_ADVICE}"
        )
    return EncodedUserData(
        text=None,
        gzip_b64=base64.b64encode(packed).decode(),
        raw_bytes=len(raw),
        sent_bytes=len(packed),
    )


# Every node dials the same N endpoints: parse each public IP once per process, not N times.
_endpoint = lru_cache(maxsize=65536)(format_endpoint)


def check_user_data_fits(plan: MeshPlan, candidates: int = 3) -> None:
    """RenderError (one line) naming, per cloud, a node whose user data cannot fit, before any resource.

    The exact check runs once keys and IPs exist, but by then `pulumi up` has created static
    IPs, and `pulumi preview` never sees it (the values are unknown). So render, per cloud, the
    `candidates` nodes with the most peers with random keys and random public IPs (both are as
    long and compress as badly as real ones) through the same encode_for_cloud. Within a node
    or two of a limit the real IPs decide, and the exact check at `pulumi up` has the last word.
    """
    public = {name: _random_key() for name in [n.name for n in plan.nodes] + [c.name for c in plan.clients]}
    endpoints = {n.name: random_public_ip() for n in plan.nodes}
    endpoints6 = {n.name: random_public_ip6() for n in plan.nodes}  # longer: IPv6 endpoints cost bytes
    secret = os.urandom(32) if plan.spec.mesh.preshared_keys else None
    by_cloud: dict[str, list[NodePlan]] = {}
    for node in plan.nodes:
        if USER_DATA_LIMITS.get(node.cloud) is not None:
            by_cloud.setdefault(node.cloud, []).append(node)
    problems: list[str] = []  # the first node that cannot fit, per cloud
    for cloud, nodes in by_cloud.items():
        for node in sorted(nodes, key=lambda n: len(n.iface.peers), reverse=True)[:candidates]:
            keys = NodeKeys(private_key=_random_key(), public_keys=public, mesh_secret=secret)
            try:
                text = node_user_data(plan, node.name, keys, endpoints, endpoints6)
                encode_for_cloud(text, cloud, node.name)
            except RenderError as e:
                problems.append(str(e).removesuffix(f"; {TOO_BIG_ADVICE}"))
                break
    if problems:
        raise RenderError(f"{'; '.join(problems)}; {TOO_BIG_ADVICE}")


def _random_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def random_public_ip() -> str:
    """A random IPv4 address: real nodes' IPs are as unrelated (and as incompressible) as these."""
    return ".".join(str(1 + b % 254) for b in os.urandom(4))


def random_public_ip6() -> str:
    """A random global IPv6 address (2000::/3), as long and incompressible as a cloud's."""
    raw = bytearray(os.urandom(16))
    raw[0] = 0x20 | (raw[0] & 0x1F)
    return str(ipaddress.IPv6Address(bytes(raw)))


def dials_ipv6(plan: MeshPlan, iface: InterfacePlan) -> bool:
    """Whether this config's Endpoints are the peers' IPv6: node configs under `endpoints: ipv6`.

    Clients never: the networks a laptop or phone roams through are the ones without IPv6.
    """
    return iface.kind == "node" and plan.spec.mesh.endpoints == "ipv6"


@dataclass(frozen=True)
class TunnelRoutes:
    """What one config routes into wg0, split for fast lookups: single addresses, and networks."""

    hosts: dict[object, str]  # address held as a /32 or /128 -> whose AllowedIPs
    networks: tuple[tuple[IPNetwork, str], ...]  # wider networks routed into wg0 (not /0) -> whose

    @classmethod
    def of(cls, iface: InterfacePlan) -> TunnelRoutes:
        hosts: dict[object, str] = {}
        # wg-quick's `Address = 10.77.0.5/24` also routes the whole overlay into wg0.
        own: list[IPNetwork] = [iface.address.network]
        if iface.address6 is not None:
            own.append(iface.address6.network)
        nets: list[tuple[IPNetwork, str]] = [(n, "the overlay of wg0's Address") for n in own]
        for p in iface.peers:
            for net in p.allowed_ips:
                if net.num_addresses == 1:
                    hosts[net.network_address] = f"AllowedIPs of peer {p.name}"
                elif net.prefixlen > 0:
                    nets.append((net, f"AllowedIPs of peer {p.name}"))
        return cls(hosts, tuple(nets))


def check_endpoint_outside_tunnel(iface: InterfacePlan, routes: TunnelRoutes, peer: str, host: str) -> None:
    """RenderError when a peer's Endpoint lies inside an AllowedIPs of the same config.

    wg-quick routes every AllowedIPs network into wg0, so the encrypted packets to that peer
    would be routed into the tunnel that carries them: the peer is never reached. Cloud IPs
    are known only once allocated, so this is where a cloud node's endpoint meets the overlay
    and subnets (the spec checks lab `publicIp`s earlier). A default route (/0, a full-tunnel
    client) is exempt: wg-quick and the WireGuard apps keep the endpoint out of it.
    """
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return  # a DNS name: resolved on the member, nothing to compare here
    owner = routes.hosts.get(ip)
    net: object = ip
    if owner is None:
        net, owner = next(
            ((n, o) for n, o in routes.networks if n.version == ip.version and ip in n), (ip, None)
        )
    if owner is not None:
        raise RenderError(
            f"{iface.name}: peer {peer}'s endpoint {ip} is inside {net}, {owner}: its packets would be "
            "routed into the tunnel itself; move the overlay or subnet off that address"
        )


def _external_endpoint(plan: MeshPlan, name: str) -> Endpoint | None:
    """ext: the configured endpoint of an external node (None for every other member)."""
    if plan.interface(name).kind != "node" or plan.node(name).cloud != "external":
        return None
    return plan.spec.node(name).endpoint


def _peer_endpoints(
    plan: MeshPlan,
    iface: InterfacePlan,
    endpoints: Mapping[str, str],
    endpoints6: Mapping[str, str] | None,
) -> dict[str, str]:
    """`host:port` for each peer this config dials, from its static public IP and its listen port."""
    result: dict[str, str] = {}
    routes = TunnelRoutes.of(iface)
    v6 = dials_ipv6(plan, iface)
    source = (endpoints6 or {}) if v6 else endpoints
    for peer in iface.peers:
        if not peer.endpoint:
            continue
        fixed = _external_endpoint(plan, peer.name)
        if fixed is not None:  # ext: a self-managed host is dialled where its `endpoint` says
            result[peer.name] = _endpoint(fixed.host, fixed.port)
            check_endpoint_outside_tunnel(iface, routes, peer.name, fixed.host)
            continue
        ip = source.get(peer.name)
        if ip is None:
            family = "IPv6" if v6 else "IP"
            raise RenderError(f"{iface.name}: no public {family} for peer {peer.name}")
        if v6 and ":" not in ip:
            raise RenderError(f"{iface.name}: peer {peer.name}: endpoints: ipv6 needs an IPv6 address")
        port = plan.interface(peer.name).listen_port
        if port is None:
            raise RenderError(f"{iface.name}: peer {peer.name} has no listen port to dial")
        try:
            result[peer.name] = _endpoint(ip, port)
        except RenderError as err:
            raise RenderError(f"{iface.name}: peer {peer.name}: {err}") from None
        check_endpoint_outside_tunnel(iface, routes, peer.name, ip)
    return result
