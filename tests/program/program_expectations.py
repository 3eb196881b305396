"""What a program run should contain, recomputed from the plan and the mocks' key material.

The tests compare the captured resources against these, so they check the program's wiring
(which IP lands in which rule, which key in which user data) rather than restating it.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import gzip
import ipaddress
import itertools
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cloud_catalog import CloudCatalog
from wgmesh_mocks import Captured, ProgramRun, is_secret, reveal

from components.firewall import FirewallFootprint, firewall_footprint
from components.firewall_limits import aws_rules_per_family
from mesh.keys import NodeKeys, derive_psk, private_key_from_b64, public_key
from mesh.placement import resolve
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


def plan_of(config: dict[str, str], catalog: CloudCatalog | None = None) -> MeshPlan:
    """The plan the program should build from the same config values (as Pulumi hands them over),
    with sizes and zones placed from what the recorded catalog offers."""
    raw = {s: json.loads(config[f"wgmesh:{s}"]) if f"wgmesh:{s}" in config else None for s in CONFIG_SECTIONS}
    plan = build_plan(parse(raw))
    today = datetime.datetime.now(datetime.UTC).date()
    placements = resolve(plan.spec, catalog or CloudCatalog(), today)
    return dataclasses.replace(plan, spec=placements.apply(plan.spec))


def only_providers(run: ProgramRun) -> list[str]:
    """What a refused run registered besides explicit providers (a provider is no cloud object)."""
    return [f"{r.type} {r.name}" for r in run.resources if not r.type.startswith("pulumi:providers:")]


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
        if node.cloud == "external":  # ext: its IPv6 endpoint, if it has one
            if node.fixed_source is not None and node.fixed_source.version == 6:
                out[node.name] = str(node.fixed_source)
        elif node.cloud == "lab":
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
        elif node.cloud == "external":  # ext: its endpoint host ("" behind NAT); no resource
            out[node.name] = node.endpoint.host if node.endpoint else ""
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
    if cloud in ("lab", "external"):
        urns = [u for u in run.component_outputs if u.endswith(f"$wgmesh:{cloud}:Node::{name}")]
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
WORLD_SOURCES = frozenset({"0.0.0.0/0", "::/0"})
# ICMPv6 as AWS ("icmpv6", type 2 code 0 only) and GCP (protocol number 58) spell it: counted as
# the same "icmp" rule as Hetzner's, whose one ICMP rule covers both families.
ICMP6_PROTOCOLS = {"aws": ("icmpv6", 2, 0), "gcp": ("58", None, None)}


def applied_firewalls(run: ProgramRun, name: str, cloud: str) -> list[Captured]:
    """The firewall resources the node's VM actually references: AWS security group ids, GCP
    firewalls targeting one of the instance's tags, Hetzner firewall ids."""
    vm = run.one(VM_TYPE[cloud], name)
    if cloud == "aws":
        groups = {g.id: g for g in run.of_type("aws:ec2/securityGroup:SecurityGroup")}
        return [groups[i] for i in vm.inputs["vpcSecurityGroupIds"]]
    if cloud == "gcp":
        tags = set(vm.inputs["tags"])
        return [f for f in run.of_type("gcp:compute/firewall:Firewall") if tags & set(f.inputs["targetTags"])]
    firewalls = {int(f.id): f for f in run.of_type("hcloud:index/firewall:Firewall")}
    return [firewalls[int(i)] for i in vm.inputs["firewallIds"]]


def firewall_rules(run: ProgramRun, name: str, cloud: str) -> set[Rule]:
    """The node's effective ingress allow rules over every firewall applied to it, whatever the
    cloud's shape: (protocol, port) -> the union of their sources."""
    rules: list[Rule] = []
    for fw in applied_firewalls(run, name, cloud):
        inputs = reveal(fw.inputs)
        if cloud == "aws":
            for r in inputs["ingress"]:
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
            assert inputs["direction"] == "INGRESS"
            for allow in inputs["allows"]:
                proto = allow["protocol"]
                if proto == ICMP6_PROTOCOLS["gcp"][0]:
                    assert all(":" in src for src in inputs["sourceRanges"])
                    proto = "icmp"
                for p in allow.get("ports") or [None]:
                    rules.append((proto, None if p is None else int(p), frozenset(inputs["sourceRanges"])))
        else:
            for r in inputs["rules"]:
                assert r["direction"] == "in"
                port = int(r["port"]) if "port" in r else None
                rules.append((r["protocol"], port, frozenset(r["sourceIps"])))
    merged: dict[tuple[str, int | None], set[str]] = {}
    for proto, port, found in rules:
        merged.setdefault((proto, port), set()).update(found)
    return {(proto, port, frozenset(src)) for (proto, port), src in merged.items()}


def assert_firewalls_open_exactly_what_the_plan_needs(run: ProgramRun, plan: MeshPlan) -> None:
    """Per node, over every firewall applied to it: WireGuard from exactly its peers' static IPs
    (and possibly its own, which shared rules admit harmlessly), plus the world only where
    roaming clients dial; SSH from adminCidrs only; ICMP for path-MTU discovery."""
    mesh = plan.spec.mesh
    # Peers' packets come from the addresses they dial from: IPv6 /128s under endpoints: ipv6.
    v6 = mesh.endpoints == "ipv6"
    eps, host = (endpoints6(run, plan), "/128") if v6 else (endpoints(run, plan), "/32")
    for node in plan.nodes:
        if node.cloud in ("lab", "external"):  # no firewall of ours
            continue
        peers = {f"{eps[p]}{host}" for p in node.peer_nodes}
        wg_sources = peers | (WORLD_SOURCES if node.wg_open_to_world else set())
        rules = firewall_rules(run, node.name, node.cloud)
        wg = [r for r in rules if r[:2] == ("udp", mesh.port)]
        if wg_sources:
            ((_, _, found),) = wg
            own = f"{eps[node.name]}{host}"
            assert found - {own} == wg_sources, node.name
        else:
            assert wg == [], node.name
        expected: set[Rule] = set()
        if mesh.admin_cidrs:
            expected.add(("tcp", 22, frozenset(str(c) for c in mesh.admin_cidrs)))
        # Hetzner's one ICMP rule covers both families; AWS and GCP add ICMPv6 only when dual stack.
        dual_stack = node.cloud == "hcloud" or mesh.public_ipv6
        icmp = WORLD_SOURCES if dual_stack else frozenset({"0.0.0.0/0"})
        expected.add(("icmp", None, icmp))
        assert {r for r in rules if r[:2] != ("udp", mesh.port)} == expected, node.name


def captured_footprint(run: ProgramRun) -> FirewallFootprint:
    """The footprint counted from what the program registered (not from the layout); a cloud the
    stack does not use counts zero, which the plan's footprint must say too."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for sg in run.of_type("aws:ec2/securityGroup:SecurityGroup", allow_empty=True):
        region = sg.provider.rsplit("::", 1)[0].rsplit("::", 1)[-1].removeprefix("aws-")
        groups.setdefault(region, []).append(reveal(sg.inputs))
    per_instance: dict[str, int] = {}
    by_id = {sg.id: sg for sg in run.of_type("aws:ec2/securityGroup:SecurityGroup", allow_empty=True)}
    for vm in run.of_type(VM_TYPE["aws"], allow_empty=True):
        ids = vm.inputs["vpcSecurityGroupIds"]
        (region,) = {
            by_id[i].provider.rsplit("::", 1)[0].rsplit("::", 1)[-1].removeprefix("aws-") for i in ids
        }
        per_instance[region] = max(per_instance.get(region, 0), len(ids))
    hcloud = [reveal(f.inputs) for f in run.of_type("hcloud:index/firewall:Firewall", allow_empty=True)]
    servers = run.of_type(VM_TYPE["hcloud"], allow_empty=True)
    return FirewallFootprint(
        aws_groups={r: len(g) for r, g in groups.items()},
        aws_rules_per_group={
            r: max(max(aws_rules_per_family(s["ingress"])) for s in g) for r, g in groups.items()
        },
        aws_groups_per_interface=per_instance,
        gcp_firewalls=len(run.of_type("gcp:compute/firewall:Firewall", allow_empty=True)),
        hcloud_firewalls=len(hcloud),
        hcloud_rules_per_firewall=max((len(f["rules"]) for f in hcloud), default=0),
        hcloud_firewalls_per_server=max((len(s.inputs["firewallIds"]) for s in servers), default=0),
        gcp_tags_per_instance=max(
            (len(v.inputs["tags"]) for v in run.of_type(VM_TYPE["gcp"], allow_empty=True)), default=0
        ),
        hcloud_effective_rules=max((sum(len(r["sourceIps"]) for r in f["rules"]) for f in hcloud), default=0),
    )


# ----------------------------------------------------------------------------- resource set


def expected_type_counts(plan: MeshPlan) -> Counter[str]:
    """How many resources of each type the plan calls for (independent of the program's code,
    except the firewall objects: `firewall_footprint`, which the firewall tests check against
    the captured rules and attachments)."""
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
    footprint = firewall_footprint(plan)
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
        c["aws:ec2/route:Route"] = len(aws_regions)  # the default routes; return routes added by tests
        for typ in ("aws:ec2/eip:Eip", "aws:ec2/eipAssociation:EipAssociation", "aws:ec2/instance:Instance"):
            c[typ] = by_cloud["aws"]
        c["aws:ec2/securityGroup:SecurityGroup"] = sum(footprint.aws_groups.values())
    if gcp_regions:
        c["wgmesh:gcp:Network"] = 1
        c["pulumi:providers:gcp"] = 1
        c["gcp:compute/network:Network"] = 1
        c["gcp:compute/subnetwork:Subnetwork"] = len(gcp_regions)
        c["gcp:compute/address:Address"] = by_cloud["gcp"] * (2 if spec.mesh.public_ipv6 else 1)
        c["gcp:compute/instance:Instance"] = by_cloud["gcp"]
        c["gcp:compute/firewall:Firewall"] = footprint.gcp_firewalls
    if by_cloud["hcloud"]:
        c["wgmesh:hcloud:Project"] = 1
        # One stack key whatever sshPublicKeys holds, from a RandomBytes seed (components/hcloud.py).
        c["hcloud:index/sshKey:SshKey"] = 1
        c[KEY_TYPE] += 1
        for typ in ("hcloud:index/primaryIp:PrimaryIp", "hcloud:index/server:Server"):
            c[typ] = by_cloud["hcloud"]
        c["hcloud:index/firewall:Firewall"] = footprint.hcloud_firewalls
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
