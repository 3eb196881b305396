"""What a program run should contain, recomputed from the plan and the mocks' key material.

The tests compare the captured resources against these, so they check the program's wiring
(which IP lands in which rule, which key in which user data) rather than restating it.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import ipaddress
import itertools
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from wgmesh_mocks import ProgramRun, is_secret, reveal

from components.gcp import network_tag
from mesh.keys import NodeKeys, derive_psk, private_key_from_b64, public_key
from mesh.plan import build_plan
from mesh.plan_types import MeshPlan
from mesh.spec import CONFIG_SECTIONS, parse

MESH = "wgmesh"
KEY_TYPE = "random:index/randomBytes:RandomBytes"
STATIC_IP = {
    "aws": ("aws:ec2/eip:Eip", "{}-eip", "publicIp"),
    "gcp": ("gcp:compute/address:Address", "{}-ip", "address"),
    "hcloud": ("hcloud:index/primaryIp:PrimaryIp", "{}-ip", "ipAddress"),
}
VM_TYPE = {
    "aws": "aws:ec2/instance:Instance",
    "gcp": "gcp:compute/instance:Instance",
    "hcloud": "hcloud:index/server:Server",
}


@dataclass(frozen=True)
class KeyMaterial:
    """Every secret the run holds, recomputed from the mocked RandomBytes outputs."""

    private: dict[str, str]
    public: dict[str, str]
    mesh_secret: bytes | None

    def node_keys(self, name: str) -> NodeKeys:
        return NodeKeys(self.private[name], dict(self.public), self.mesh_secret)

    def psks(self, plan: MeshPlan) -> set[str]:
        if self.mesh_secret is None:
            return set()
        out = set()
        ifaces = [m.iface for m in plan.nodes] + [c.iface for c in plan.clients]
        for iface in ifaces:
            for peer in iface.peers:
                if peer.psk_epoch is not None:
                    out.add(derive_psk(self.mesh_secret, iface.name, peer.name, peer.psk_epoch))
        return out

    def secrets(self, plan: MeshPlan) -> set[str]:
        """Strings that must never appear outside a secret (keys, PSKs, the PSK root)."""
        found = set(self.private.values()) | self.psks(plan)
        if self.mesh_secret is not None:
            found.add(base64.b64encode(self.mesh_secret).decode())
        return found


def plan_of(config: dict[str, str]) -> MeshPlan:
    """The plan the program should build from the same config values (as Pulumi hands them over)."""
    raw = {s: json.loads(config[f"wgmesh:{s}"]) if f"wgmesh:{s}" in config else None for s in CONFIG_SECTIONS}
    return build_plan(parse(raw))


def key_material(run: ProgramRun, plan: MeshPlan) -> KeyMaterial:
    private = {}
    for name in [n.name for n in plan.nodes] + [c.name for c in plan.clients]:
        seed = run.one(KEY_TYPE, f"{name}-key").outputs["base64"]
        private[name] = private_key_from_b64(reveal(seed))
    secret = None
    if plan.spec.mesh.preshared_keys:
        secret = base64.b64decode(reveal(run.one(KEY_TYPE, f"{MESH}-psk-root").outputs["base64"]))
    return KeyMaterial(private, {m: public_key(k) for m, k in private.items()}, secret)


def endpoints6(run: ProgramRun, plan: MeshPlan) -> dict[str, str]:
    """Each node's static public IPv6 (nodes without one left out): what `endpoints: ipv6` dials."""
    out = {}
    for node in plan.spec.nodes:
        if node.cloud == "lab":
            if node.public_ip6 is not None:
                out[node.name] = str(node.public_ip6)
        elif plan.spec.mesh.public_ipv6:
            ip6 = public_ip6(run, node.name, node.cloud)
            assert ip6 is not None
            out[node.name] = ip6
    return out


def endpoints(run: ProgramRun, plan: MeshPlan) -> dict[str, str]:
    """Each node's public IP: the mocked static IP resource's address, or a lab node's publicIp."""
    out = {}
    for node in plan.spec.nodes:
        if node.cloud == "lab":
            out[node.name] = str(node.public_ip)
        else:
            typ, pattern, field = STATIC_IP[node.cloud]
            out[node.name] = run.one(typ, pattern.format(node.name)).outputs[field]
    return out


def public_ip6(run: ProgramRun, name: str, cloud: str) -> str | None:
    """The static public IPv6 a node should export (and peers dial), from the mocked resources."""
    if cloud == "aws":
        (address,) = run.one(VM_TYPE["aws"], name).inputs["ipv6Addresses"]  # fixed, not a count
        return str(address)
    if cloud == "gcp":
        return str(run.one("gcp:compute/address:Address", f"{name}-ip6").outputs["address"])
    if cloud == "hcloud":
        network = run.one("hcloud:index/primaryIp:PrimaryIp", f"{name}-ip6").outputs["ipNetwork"]
        return str(ipaddress.IPv6Network(network)[1])  # Hetzner servers answer on ::1 of their /64
    return None


def handed_user_data(run: ProgramRun, name: str, cloud: str) -> Any:
    """The user data the VM (or lab node component) receives, still wrapped if secret."""
    if cloud == "lab":
        urns = [u for u in run.component_outputs if u.endswith(f"$wgmesh:lab:Node::{name}")]
        assert len(urns) == 1
        return run.component_outputs[urns[0]]["userData"]
    vm = run.one(VM_TYPE[cloud], name)
    if cloud == "aws":
        return vm.inputs["userDataBase64"]
    if cloud == "gcp":
        metadata = vm.inputs["metadata"]
        if is_secret(metadata):
            return {**metadata, "value": metadata["value"]["user-data"]}
        return metadata["user-data"]
    return vm.inputs["userData"]


def decode_aws_user_data(b64: str) -> str:
    raw = base64.b64decode(b64)
    return (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode()


# ----------------------------------------------------------------------------- firewalls


Rule = tuple[str, int | None, frozenset[str]]  # protocol, port, sources
# ICMPv6 as AWS ("icmpv6", type 2 code 0 only) and GCP (protocol number 58) spell it: counted as
# the same "icmp" rule as Hetzner's, whose one ICMP rule covers both families.
ICMP6_PROTOCOLS = {"aws": ("icmpv6", 2, 0), "gcp": ("58", None, None)}


def firewall_rules(run: ProgramRun, name: str, cloud: str) -> set[Rule]:
    """The node's effective ingress allow rules, whatever the cloud's shape."""
    rules: list[Rule] = []
    if cloud == "aws":
        group = run.one("aws:ec2/securityGroup:SecurityGroup", f"{name}-sg")
        for r in reveal(group.inputs["ingress"]):
            proto = r["protocol"]
            if proto == "icmpv6":
                assert (int(r["fromPort"]), int(r["toPort"])) == ICMP6_PROTOCOLS["aws"][1:]
                assert not r.get("cidrBlocks")
                proto = "icmp"
            port = None if proto == "icmp" else int(r["fromPort"])
            if port is not None:
                assert int(r["toPort"]) == port
            sources = [*r.get("cidrBlocks", []), *r.get("ipv6CidrBlocks", [])]
            rules.append((proto, port, frozenset(sources)))
    elif cloud == "gcp":
        for fw in run.of_type("gcp:compute/firewall:Firewall"):
            inputs = reveal(fw.inputs)
            if inputs["targetTags"] != [network_tag(name)]:
                continue
            assert inputs["direction"] == "INGRESS"
            for allow in inputs["allows"]:
                proto = allow["protocol"]
                if proto == ICMP6_PROTOCOLS["gcp"][0]:
                    assert all(":" in src for src in inputs["sourceRanges"])
                    proto = "icmp"
                ports = allow.get("ports") or [None]
                for p in ports:
                    rules.append((proto, None if p is None else int(p), frozenset(inputs["sourceRanges"])))
    elif cloud == "hcloud":
        fw = run.one("hcloud:index/firewall:Firewall", f"{name}-fw")
        for r in reveal(fw.inputs["rules"]):
            assert r["direction"] == "in"
            port = int(r["port"]) if "port" in r else None
            rules.append((r["protocol"], port, frozenset(r["sourceIps"])))
    merged: dict[tuple[str, int | None], set[str]] = {}
    for proto, port, found in rules:
        merged.setdefault((proto, port), set()).update(found)
    return {(proto, port, frozenset(src)) for (proto, port), src in merged.items()}


# ----------------------------------------------------------------------------- resource set


def expected_type_counts(plan: MeshPlan) -> Counter[str]:
    """How many resources of each type the plan calls for (independent of the program's code)."""
    spec = plan.spec
    c: Counter[str] = Counter()
    c["wgmesh:index:WireGuardMesh"] = 1
    members = len(spec.nodes) + len(spec.clients)
    c["wgmesh:keys:WireGuardKey"] = members
    c[KEY_TYPE] = members + (1 if spec.mesh.preshared_keys else 0)
    by_cloud = Counter(n.cloud for n in spec.nodes)
    aws_regions = {n.region for n in spec.nodes if n.cloud == "aws"}
    gcp_regions = {n.region for n in spec.nodes if n.cloud == "gcp"}
    for cloud, count in by_cloud.items():
        c[f"wgmesh:{cloud}:Node"] = count
    if aws_regions:
        for typ in (
            "wgmesh:aws:Region",
            "pulumi:providers:aws",
            "aws:ec2/vpc:Vpc",
            "aws:ec2/subnet:Subnet",
            "aws:ec2/internetGateway:InternetGateway",
            "aws:ec2/routeTable:RouteTable",
            "aws:ec2/routeTableAssociation:RouteTableAssociation",
        ):
            c[typ] = len(aws_regions)
        # TEMPORARY: a second provider per region reads its quotas (components/quota_aws.py)
        # until the per-run Providers registry serves both.
        c["pulumi:providers:aws"] += len(aws_regions)
        c["aws:ec2/route:Route"] = len(aws_regions)  # the default routes; return routes added by tests
        for typ in (
            "aws:ec2/eip:Eip",
            "aws:ec2/eipAssociation:EipAssociation",
            "aws:ec2/securityGroup:SecurityGroup",
            "aws:ec2/instance:Instance",
        ):
            c[typ] = by_cloud["aws"]
    if gcp_regions:
        c["wgmesh:gcp:Network"] = 1
        c["pulumi:providers:gcp"] = 1
        c["gcp:compute/network:Network"] = 1
        c["gcp:compute/subnetwork:Subnetwork"] = len(gcp_regions)
        c["gcp:compute/address:Address"] = by_cloud["gcp"] * (2 if spec.mesh.public_ipv6 else 1)
        c["gcp:compute/instance:Instance"] = by_cloud["gcp"]
    if by_cloud["hcloud"]:
        c["wgmesh:hcloud:Project"] = 1
        c["hcloud:index/sshKey:SshKey"] = len(spec.mesh.ssh_public_keys)
        for typ in (
            "hcloud:index/primaryIp:PrimaryIp",
            "hcloud:index/firewall:Firewall",
            "hcloud:index/server:Server",
        ):
            c[typ] = by_cloud["hcloud"]
        if spec.mesh.public_ipv6:
            c["hcloud:index/primaryIp:PrimaryIp"] *= 2  # an IPv6 primary IP per server too
    return +c


def strings(value: Any, path: str = "") -> Iterator[tuple[str, str, bool]]:
    """(path, text, inside_secret) for every string in a captured value."""
    if is_secret(value):
        for p, text, _ in strings(value["value"], path):
            yield p, text, True
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from strings(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from strings(v, f"{path}[{i}]")
    elif isinstance(value, str):
        yield path, value, False


def decoded_forms(text: str) -> Iterator[str]:
    """The text, and what it decodes to if it is base64 (and gzip inside): secrets can hide there."""
    yield text
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return
    for blob in (raw, *([gzip.decompress(raw)] if raw[:2] == b"\x1f\x8b" else [])):
        yield blob.decode("utf-8", "replace")
        yield base64.b64encode(blob).decode()


def pairs(names: list[str]) -> Iterator[tuple[str, str]]:
    return itertools.combinations(sorted(names), 2)
