"""wg-quick config text (wg0.conf) for one node or client, from its InterfacePlan and keys.

Every value comes from the plan or from validated keys and addresses, so no line can be
injected through a name. The output is byte-for-byte deterministic for the same inputs,
which keeps `pulumi preview --diff` quiet when nothing changed.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence

from mesh.errors import RenderError
from mesh.keys import NodeKeys
from mesh.plan_types import InterfacePlan, PeerPlan

WG_INTERFACE = "wg0"
# A DNS name wg accepts as an Endpoint host (used only when the endpoint is not an IP).
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME_RE = re.compile(rf"^(?=.{{1,253}}$)({_LABEL}\.)*{_LABEL}$")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def format_endpoint(host: str, port: int) -> str:
    """`ip:port`, `[ip6]:port` or `name:port`, as wg expects; RenderError for anything else."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME_RE.match(host) or host.rsplit(".", 1)[-1].isdigit():  # 10.0.0.256 is no name
            raise RenderError("endpoint host is neither an IP address nor a DNS name") from None
        return f"{host}:{port}"
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def render_wg_conf(
    iface: InterfacePlan,
    keys: NodeKeys,
    peer_endpoints: Mapping[str, str],
    *,
    dns: Sequence[Address] = (),
    post_up: Sequence[str] = (),
    post_down: Sequence[str] = (),
) -> str:
    """The whole wg-quick file: [Interface] then one [Peer] per planned peer, in plan order.

    `peer_endpoints` maps a peer name to its formatted `host:port` (see `format_endpoint`);
    only peers planned with `endpoint=True` need one. `SaveConfig = false` is written for
    nodes only: the WireGuard phone apps reject keys they do not know.
    """
    sections = [_interface_lines(iface, keys, dns, post_up, post_down)]
    sections += [_peer_lines(iface.name, peer, keys, peer_endpoints) for peer in iface.peers]
    return "\n\n".join("\n".join(lines) for lines in sections) + "\n"


def _interface_lines(
    iface: InterfacePlan,
    keys: NodeKeys,
    dns: Sequence[Address],
    post_up: Sequence[str],
    post_down: Sequence[str],
) -> list[str]:
    addresses: list[ipaddress.IPv4Interface | ipaddress.IPv6Interface] = [iface.address]
    if iface.address6 is not None:
        addresses.append(iface.address6)
    lines = [
        "[Interface]",
        f"# {iface.name} ({iface.kind}), rendered by wgmesh",
        f"Address = {_join(addresses)}",
    ]
    if iface.listen_port is not None:
        lines.append(f"ListenPort = {iface.listen_port}")
    lines.append(f"PrivateKey = {keys.private_key}")
    lines.append(f"MTU = {iface.mtu}")
    if iface.kind == "node":
        lines.append("SaveConfig = false")
    if dns:
        lines.append(f"DNS = {_join(dns)}")
    lines += [f"PostUp = {_one_line(cmd)}" for cmd in post_up]
    lines += [f"PostDown = {_one_line(cmd)}" for cmd in post_down]
    return lines


def _peer_lines(me: str, peer: PeerPlan, keys: NodeKeys, peer_endpoints: Mapping[str, str]) -> list[str]:
    public_key = keys.public_keys.get(peer.name)
    if public_key is None:
        raise RenderError(f"{me}: no public key for peer {peer.name}")
    lines = ["[Peer]", f"# {peer.name}", f"PublicKey = {public_key}"]
    if peer.psk_epoch is not None:
        if keys.mesh_secret is None:
            raise RenderError(f"{me}: peer {peer.name} needs a preshared key but there is no mesh secret")
        lines.append(f"PresharedKey = {keys.psk(me, peer.name, peer.psk_epoch)}")
    lines.append(f"AllowedIPs = {_join(peer.allowed_ips)}")
    if peer.endpoint:
        endpoint = peer_endpoints.get(peer.name)
        if endpoint is None:
            raise RenderError(f"{me}: no endpoint for peer {peer.name}")
        lines.append(f"Endpoint = {_one_line(endpoint)}")
    if peer.keepalive is not None:
        lines.append(f"PersistentKeepalive = {peer.keepalive}")
    return lines


def _join(values: Iterable[object]) -> str:
    return ", ".join(str(v) for v in values)


def _one_line(value: str) -> str:
    if "\n" in value or "\r" in value:
        raise RenderError("a wg-quick value must fit on one line")
    return value
