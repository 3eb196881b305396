"""`make render`: every node's #cloud-config and apply bundle, every client's wg conf, offline, fresh keys.

`cloud: external` nodes also get `install.sh`, their one-command installer (cloudinit/installer.py).

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
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cloudinit.bundle import node_bundle
from cloudinit.installer import INSTALLER_NAME, node_installer
from cloudinit.render import client_config, encode_for_cloud, node_user_data_from_conf, node_wg_conf
from mesh import manifest
from mesh.errors import ConfigError, RenderError
from mesh.keys import NodeKeys, private_key, public_key
from mesh.manifest import MANIFEST_FILE, client_conf_path
from mesh.plan import build_plan
from mesh.plan_types import MeshPlan
from mesh.spec import IPNetwork, MeshSpec
from mesh.stackfile import load_spec, stack_name
from tools.keyfile import load_or_create
from tools.secretfiles import private_dir, private_umask, write_private

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
        fixed = node.fixed_source  # ext: an external host's IPv4 endpoint is its address
        if fixed is not None and fixed.version == 4:
            endpoints[node.name] = str(fixed)
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
    with private_umask():
        private_dir(out)
        for node in plan.nodes:
            member = keys.for_member(node.name, public_keys)
            conf = node_wg_conf(plan, node.name, member, endpoints, endpoints6)
            text = node_user_data_from_conf(plan, node.name, conf)
            encoded = encode_for_cloud(text, node.cloud, node.name)  # fail here as `pulumi up` would
            private_dir(out / node.name)
            write_private(out / node.name / "user-data", text)
            # What a live update pipes to the apply (`python -m cloudinit.sync` prints the command).
            write_private(out / node.name / BUNDLE_FILE, node_bundle(plan, node.name, conf))
            if node.cloud == "external":  # ext: the same files for a host without cloud-init
                write_private(out / node.name / INSTALLER_NAME, node_installer(plan, node.name, conf))
            gzipped = encoded.gzip_b64 is not None
            rendered.append(
                RenderedNode(node.name, node.cloud, encoded.raw_bytes, encoded.sent_bytes, gzipped)
            )
        if plan.clients:
            private_dir(out / "clients")
        for client in plan.clients:
            conf = client_config(plan, client.name, keys.for_member(client.name, public_keys), endpoints)
            write_private(out / client_conf_path(client.name), conf)
        doc = manifest.build(stack, plan, endpoints, public_keys, endpoints6)
        write_private(out / MANIFEST_FILE, manifest.dumps(doc), 0o644)  # no secret in it
    return rendered


@dataclass(frozen=True)
class Rendered:
    """What `render_to` wrote: one line per node for the user, no secret."""

    out: Path
    nodes: tuple[RenderedNode, ...]
    clients: int

    def lines(self) -> list[str]:
        lines = [
            f"{r.name}: {r.cloud} user-data {r.raw_bytes} bytes "
            f"({'gzip' if r.gzipped else 'plain'}, {r.sent_bytes} sent)"
            for r in self.nodes
        ]
        return [
            *lines,
            f"wrote {len(self.nodes)} nodes, {self.clients} clients and {MANIFEST_FILE} to {self.out}",
        ]


def render_to(stack: str | Path, out: Path, keys: Path | None = None) -> Rendered:
    """`make render` as a function (the lab's entry point): a stack name or file rendered into `out`.

    Fresh keys, or those of the `keys` file (created when absent). Raises ConfigError for a bad
    stack file and RenderError for a plan that cannot be rendered (both one message, no secret).
    """
    spec = load_spec(stack)
    plan = build_plan(spec)
    endpoints = placeholder_endpoints(spec)
    material = KeyMaterial.fresh(spec) if keys is None else stored_key_material(keys, spec)
    endpoints6 = placeholder_endpoints6(spec)
    nodes = render_stack(stack_name(stack), plan, out, material, endpoints, endpoints6)
    return Rendered(out, tuple(nodes), len(plan.clients))


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
        rendered = render_to(args.stack, args.out, args.keys)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    except RenderError as e:
        print(f"render: {e}", file=sys.stderr)
        return 1
    print("\n".join(rendered.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
