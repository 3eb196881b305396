"""`make render`: every node's #cloud-config and apply bundle, every client's wg conf, offline, fresh keys.

Reads a stack file, builds the plan and renders what `pulumi up` would send, so the output can
be checked (cloud-init schema, wg-quick strip, nft -c) and booted in the lab with no cloud
account. Cloud nodes get placeholder public IPs from the documentation ranges; lab nodes use
their `publicIp` (and `publicIp6`). Secret files are 0600 in 0700 directories; mesh.json holds no secret.

    python -m tools.render --stack dev --out /tmp/r
"""

from __future__ import annotations

import argparse
import ipaddress
import itertools
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloudinit.bundle import node_bundle
from cloudinit.render import client_config, encode_for_cloud, node_user_data_from_conf, node_wg_conf
from mesh.errors import ConfigError, RenderError
from mesh.keys import NodeKeys, private_key, public_key
from mesh.plan import build_plan
from mesh.plan_types import InterfacePlan, MeshPlan
from mesh.spec import IPNetwork, MeshSpec
from mesh.stackfile import load_spec, stack_name
from tools.keyfile import load_or_create

BUNDLE_FILE = "bundle"  # <out>/<node>/bundle: the node's apply payload (secret, 0600)

# Documentation ranges (RFC 5737) for nodes whose real IP only exists once a cloud allocates it.
PLACEHOLDER_NETS = (ipaddress.IPv4Network("192.0.2.0/24"), ipaddress.IPv4Network("203.0.113.0/24"))
PLACEHOLDER_FIRST_HOST = 10
PLACEHOLDER_NET6 = ipaddress.IPv6Network("2001:db8::/32")  # RFC 3849


@dataclass(frozen=True)
class KeyMaterial:
    """Private keys by member name and the PSK root; repr shows names only."""

    private_keys: dict[str, str]
    mesh_secret: bytes | None

    def __repr__(self) -> str:
        return f"KeyMaterial(<secret>, members={sorted(self.private_keys)})"

    @classmethod
    def from_raw(cls, raw: Mapping[str, bytes], mesh_secret: bytes | None) -> KeyMaterial:
        return cls({name: private_key(b) for name, b in raw.items()}, mesh_secret)

    @classmethod
    def fresh(cls, spec: MeshSpec) -> KeyMaterial:
        """os.urandom per member (like RandomBytes(32) in the Pulumi program), a fresh mesh secret."""
        names = [n.name for n in spec.nodes] + [c.name for c in spec.clients]
        secret = os.urandom(32) if spec.mesh.preshared_keys else None
        return cls.from_raw({name: os.urandom(32) for name in names}, secret)

    def public_keys(self) -> dict[str, str]:
        return {name: public_key(priv) for name, priv in self.private_keys.items()}

    def for_member(self, name: str, public_keys: dict[str, str]) -> NodeKeys:
        return NodeKeys(
            private_key=self.private_keys[name], public_keys=public_keys, mesh_secret=self.mesh_secret
        )


def stored_key_material(path: Path, spec: MeshSpec) -> KeyMaterial:
    """Keys from a `--keys` file (tools.keyfile): stable across renders, like Pulumi state."""
    stored = load_or_create(path, spec)
    return KeyMaterial.from_raw(stored.members, stored.mesh_secret)


def _in_mesh(spec: MeshSpec, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether a placeholder would sit inside the mesh's own networks (the render refuses that
    for a real address; a placeholder just moves on)."""
    nets: list[IPNetwork] = [spec.mesh.cidr, *([spec.mesh.cidr6] if spec.mesh.cidr6 else [])]
    nets += [net for n in spec.nodes for net in n.subnets]
    return any(ip.version == net.version and ip in net for net in nets)


def placeholder_endpoints(spec: MeshSpec) -> dict[str, str]:
    """Public IP per node: lab nodes their publicIp, cloud nodes 192.0.2.10, .11, ... (then 203.0.113.x)."""
    taken = {str(n.public_ip) for n in spec.nodes if n.public_ip is not None}
    pool = (
        str(ip)
        for net in PLACEHOLDER_NETS
        for ip in net.hosts()
        if int(ip) - int(net.network_address) >= PLACEHOLDER_FIRST_HOST
        and str(ip) not in taken
        and not _in_mesh(spec, ip)
    )
    endpoints: dict[str, str] = {}
    for node in spec.nodes:
        if node.public_ip is not None:
            endpoints[node.name] = str(node.public_ip)
            continue
        ip = next(pool, None)
        if ip is None:
            raise RenderError(f"{node.name}: no placeholder public IP left in the documentation ranges")
        endpoints[node.name] = ip
    return endpoints


def placeholder_endpoints6(spec: MeshSpec) -> dict[str, str]:
    """Static public IPv6 per node: lab nodes their publicIp6; cloud nodes, when the mesh gives
    them one (cidr6 or endpoints: ipv6), 2001:db8::a, ::b, ... in node order."""
    taken = {n.public_ip6 for n in spec.nodes if n.public_ip6 is not None}
    pool = (
        PLACEHOLDER_NET6.network_address + i
        for i in itertools.count(PLACEHOLDER_FIRST_HOST)
        if PLACEHOLDER_NET6.network_address + i not in taken
    )
    out: dict[str, str] = {}
    for node in spec.nodes:
        if node.public_ip6 is not None:
            out[node.name] = str(node.public_ip6)
        elif node.cloud != "lab" and spec.mesh.public_ipv6:
            out[node.name] = str(next(pool))
    return out


def manifest(
    stack: str,
    plan: MeshPlan,
    endpoints: Mapping[str, str],
    public_keys: Mapping[str, str],
    endpoints6: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """mesh.json: what the lab and a reader need to know about the mesh, and nothing secret.

    Each member lists its `peers` (the names in its wg0.conf) so the lab checks what the plan
    wants (hub and spoke, clients) instead of assuming a full mesh. `endpoints` says which
    family nodes dial each other on, `public_ip6` each node's static IPv6 (None without one).
    """
    endpoints6 = endpoints6 or {}
    mesh = plan.spec.mesh

    def ip6(iface: InterfacePlan) -> str | None:
        return None if iface.address6 is None else str(iface.address6.ip)

    def peers(iface: InterfacePlan) -> list[str]:
        return [p.name for p in iface.peers]

    def keepalive(iface: InterfacePlan) -> int | None:
        return next((p.keepalive for p in iface.peers if p.keepalive is not None), None)

    return {
        "stack": stack,
        "topology": mesh.topology,
        "cidr": str(mesh.cidr),
        "cidr6": None if mesh.cidr6 is None else str(mesh.cidr6),
        "port": mesh.port,
        "endpoints": mesh.endpoints,
        "nodes": [
            {
                "name": n.name,
                "cloud": n.cloud,
                "public_ip": endpoints[n.name],
                "public_ip6": endpoints6.get(n.name),
                "address": str(n.iface.address.ip),
                "address6": ip6(n.iface),
                "public_key": public_keys[n.name],
                "subnets": [str(s) for s in plan.spec.node(n.name).subnets],
                "underlay_mtu": n.underlay_mtu,
                "mtu": n.iface.mtu,
                "listen_port": n.iface.listen_port,
                "peers": peers(n.iface),
                "hub": plan.spec.node(n.name).hub,
                "gateway": n.gateway,
                "masquerade": bool(n.masquerade),
            }
            for n in plan.nodes
        ],
        "clients": [
            {
                "name": c.name,
                "address": str(c.iface.address.ip),
                "address6": ip6(c.iface),
                "public_key": public_keys[c.name],
                "mtu": c.iface.mtu,
                "full_tunnel": c.full_tunnel,
                "peers": peers(c.iface),
                "keepalive": keepalive(c.iface),
                "conf": f"clients/{c.name}.conf",
            }
            for c in plan.clients
        ],
    }


@dataclass(frozen=True)
class RenderedNode:
    name: str
    cloud: str
    raw_bytes: int
    sent_bytes: int
    gzipped: bool


def render_stack(
    stack: str,
    plan: MeshPlan,
    out: Path,
    keys: KeyMaterial,
    endpoints: Mapping[str, str],
    endpoints6: Mapping[str, str] | None = None,
) -> list[RenderedNode]:
    """Write every node's user-data, every client's conf and mesh.json under `out`."""
    public_keys = keys.public_keys()
    rendered: list[RenderedNode] = []
    with _private_umask():
        _private_dir(out)
        for node in plan.nodes:
            member = keys.for_member(node.name, public_keys)
            conf = node_wg_conf(plan, node.name, member, endpoints, endpoints6)
            text = node_user_data_from_conf(plan, node.name, conf)
            encoded = encode_for_cloud(text, node.cloud, node.name)  # fail here as `pulumi up` would
            _private_dir(out / node.name)
            _write(out / node.name / "user-data", text, 0o600)
            # What a live update pipes to the apply (`python -m cloudinit.sync` prints the command).
            _write(out / node.name / BUNDLE_FILE, node_bundle(plan, node.name, conf), 0o600)
            gzipped = encoded.gzip_b64 is not None
            rendered.append(
                RenderedNode(node.name, node.cloud, encoded.raw_bytes, encoded.sent_bytes, gzipped)
            )
        if plan.clients:
            _private_dir(out / "clients")
        for client in plan.clients:
            conf = client_config(plan, client.name, keys.for_member(client.name, public_keys), endpoints)
            _write(out / "clients" / f"{client.name}.conf", conf, 0o600)
        doc = manifest(stack, plan, endpoints, public_keys, endpoints6)
        _write(out / "mesh.json", json.dumps(doc, indent=2) + "\n", 0o644)
    return rendered


@contextmanager
def _private_umask() -> Iterator[None]:
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)  # an existing directory may have been looser


def _write(path: Path, text: str, mode: int) -> None:
    """Create or truncate with `mode` from the first byte (no window where a secret is readable)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), mode)
        f.write(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.render", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True, help="stack name (stacks/Pulumi.<name>.yaml) or a path")
    parser.add_argument("--out", required=True, type=Path, help="output directory (created 0700)")
    parser.add_argument(
        "--keys",
        type=Path,
        help="0600 keys file reused across renders (created when absent; new keys only on keyEpoch bumps)",
    )
    args = parser.parse_args(argv)
    try:
        spec = load_spec(args.stack)
        plan = build_plan(spec)
        endpoints = placeholder_endpoints(spec)
        keys = KeyMaterial.fresh(spec) if args.keys is None else stored_key_material(args.keys, spec)
        endpoints6 = placeholder_endpoints6(spec)
        rendered = render_stack(stack_name(args.stack), plan, args.out, keys, endpoints, endpoints6)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    except RenderError as e:
        print(f"render: {e}", file=sys.stderr)
        return 1
    for r in rendered:
        form = "gzip" if r.gzipped else "plain"
        print(f"{r.name}: {r.cloud} user-data {r.raw_bytes} bytes ({form}, {r.sent_bytes} sent)")
    print(f"wrote {len(plan.nodes)} nodes, {len(plan.clients)} clients and mesh.json to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
