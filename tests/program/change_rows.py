"""Every stack change a user makes on a running mesh, as one row each: the config before and after,
and the replacements the cloud requires (with its documentation).

`outcome(key)` runs the real program for both configs through the engine simulator
(engine_sim.simulate), once per process. The change table in docs/changes.md
(`python -m bench.changes --write`) and tests/program/test_program_changes.py read these rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from engine_sim import Outcome, simulate
from ssh_test_keys import ADMIN_KEY, ADMIN_PUB, NEW_KEY, NEW_PUB
from wgmesh_mocks import REPO, ProgramRun, run_program, stack_config

SECRET_KEYS = ("wgmesh:sshPrivateKey",)


@dataclass
class Stack:
    """A stack's config as data: edit `mesh`, `nodes`, `clients`, then `config()`."""

    name: str
    mesh: dict[str, Any]
    nodes: list[dict[str, Any]]
    clients: list[dict[str, Any]]
    rest: dict[str, str]
    private_key: str = ADMIN_KEY  # `wgmesh:sshPrivateKey` when liveUpdates is on

    def node(self, name: str) -> dict[str, Any]:
        return next(n for n in self.nodes if n["name"] == name)

    def config(self) -> dict[str, str]:
        config = dict(self.rest)
        config["wgmesh:mesh"] = json.dumps(self.mesh)
        config["wgmesh:nodes"] = json.dumps(self.nodes)
        config["wgmesh:clients"] = json.dumps(self.clients)
        if self.mesh.get("liveUpdates"):
            config["wgmesh:sshPrivateKey"] = self.private_key  # as `config set --secret` would
        return config


def load(stack: str, live: bool = True) -> Stack:
    """stacks/Pulumi.<stack>.yaml, with live updates on (as docs/changes.md recommends)."""
    config = stack_config(REPO / "stacks" / f"Pulumi.{stack}.yaml")
    mesh = json.loads(config.pop("wgmesh:mesh"))
    mesh["liveUpdates"] = live
    mesh["sshPublicKeys"] = [ADMIN_PUB]  # the public half of the key live updates log in with
    nodes = json.loads(config.pop("wgmesh:nodes"))
    clients = json.loads(config.pop("wgmesh:clients", "[]"))
    return Stack(stack, mesh, nodes, clients, config)


Edit = Callable[[Stack], None]


def _nothing(_: Stack) -> None:
    pass


@dataclass(frozen=True)
class Row:
    """One change. `allowed`: resources (engine_sim.short names) the cloud must replace, and why."""

    key: str
    change: str  # the table's first column (markdown)
    stack: str
    after: Edit
    before: Edit = _nothing
    allowed: dict[str, str] = field(default_factory=dict)
    replace: frozenset[str] = frozenset()  # `pulumi up --replace` of these (short names)


def _add_node(s: Stack) -> None:
    s.nodes.append({"name": "aws-fra2", "cloud": "aws", "region": "eu-central-1", "address": "10.77.0.4"})


def _remove_node(s: Stack) -> None:
    s.nodes = [n for n in s.nodes if n["name"] != "hetzner-nbg"]


def _add_client(s: Stack) -> None:
    s.clients.append({"name": "phone", "address": "10.77.0.101"})


def _remove_client(s: Stack) -> None:
    s.clients = [c for c in s.clients if c["name"] != "laptop"]


def _node_epoch(s: Stack) -> None:
    s.node("gcp-fra")["keyEpoch"] = 1


def _mesh_epoch(s: Stack) -> None:
    s.mesh["keyEpoch"] = 1


def _gcp_zone(s: Stack) -> None:
    s.node("gcp-fra")["zone"] = "europe-west3-b"


def _hetzner_location(s: Stack) -> None:
    s.node("hetzner-nbg")["region"] = "fsn1"


def _sizes(s: Stack) -> None:
    for name, size in {"aws-fra": "t3.small", "gcp-fra": "e2-medium", "hetzner-nbg": "cx33"}.items():
        s.node(name)["size"] = size


def _image(s: Stack) -> None:
    for n in s.nodes:
        n["image"] = "ubuntu-22.04"


def _gateway(s: Stack) -> None:
    s.node("hetzner-nbg")["gateway"] = True


def _masquerade_off(s: Stack) -> None:
    s.node("jump-aws")["masquerade"] = False


def _second_subnet(s: Stack) -> None:
    s.node("aws-fra")["subnets"] = ["10.0.4.0/24", "10.0.5.0/24"]


def _first_subnet_gcp(s: Stack) -> None:
    s.node("gcp-fra")["subnets"] = ["10.0.9.0/24"]


def _cidr6(s: Stack) -> None:
    s.mesh["cidr6"] = "fd77:77::/64"


def _endpoints_v4(s: Stack) -> None:
    s.mesh.pop("endpoints", None)


def _endpoints_v6(s: Stack) -> None:
    s.mesh["endpoints"] = "ipv6"


def _admin_cidrs(s: Stack) -> None:
    s.mesh["adminCidrs"] = [*s.mesh["adminCidrs"], "198.51.100.0/24"]


def _add_admin_key(s: Stack) -> None:
    """Phase 1 of an admin key rotation: the new public key joins; Pulumi still logs in with the old."""
    s.mesh["sshPublicKeys"] = [*s.mesh["sshPublicKeys"], NEW_PUB]


def _switch_admin_key(s: Stack) -> None:
    """Phase 2: log in with the new key and drop the old public key."""
    s.mesh["sshPublicKeys"] = [NEW_PUB]
    s.private_key = NEW_KEY


def _reorder_admin_keys(s: Stack) -> None:
    s.mesh["sshPublicKeys"] = list(reversed(s.mesh["sshPublicKeys"]))


def _live_off(s: Stack) -> None:
    s.mesh["liveUpdates"] = False


def _live_on(s: Stack) -> None:
    s.mesh["liveUpdates"] = True


def _second_router(s: Stack) -> None:
    s.nodes.append(
        {"name": "aws-fra2", "cloud": "aws", "region": "eu-central-1", "address": "10.77.0.4",
         "subnets": ["10.0.8.0/24"]}
    )  # fmt: skip


def _second_router_replacing(s: Stack) -> None:
    _second_router(s)
    s.mesh["replaceNetworks"] = ["aws-eu-central-1"]


GCP_ZONE = (
    "google_compute_instance `zone`: ForceNew (terraform-provider-google "
    "services/compute/resource_compute_instance.go); a VM cannot move zones"
)
HCLOUD_LOCATION = (
    "Hetzner: a server cannot change location (hcloud_server `location` ForceNew) and a primary IP "
    "is assigned only to a server in its own location (docs.hetzner.cloud, Create a Primary IP)"
)
AWS_IPV6 = (
    'aws_instance `ipv6_addresses`: "(forces new resource)" (registry.terraform.io '
    "hashicorp/aws docs, resources/instance)"
)
GCP_IPV6 = (
    "google_compute_instance `network_interface.ipv6_access_config.external_ipv6`: ForceNew "
    "(resource_compute_instance.go)"
)
EIP_ASSOC = "aws_eip_association `instance_id`: ForceNew; follows the replaced instance"
REPLACE_ASKED = "`pulumi up --replace <urn>`: the user asks for a new VM (e.g. a broken host)"
RANDOM_KEEPERS = "random_bytes `keepers`: ForceNew by design (new random bytes = the new key)"

HCLOUD_MOVED = ("hcloud:Server hetzner-nbg", "hcloud:PrimaryIp hetzner-nbg-ip")

ROWS: tuple[Row, ...] = (
    Row("add-node", "add a node (`aws-fra2`)", "dev", _add_node),
    Row("remove-node", "remove a node (`hetzner-nbg`)", "dev", _remove_node),
    Row("add-client", "add a client (`phone`)", "dev", _add_client),
    Row("remove-client", "remove a client (`laptop`)", "dev", _remove_client),
    Row("node-key-epoch", "a node's `keyEpoch` (`gcp-fra`)", "dev", _node_epoch,
        allowed={"random:RandomBytes gcp-fra-key": RANDOM_KEEPERS}),
    Row("mesh-key-epoch", "the mesh's `keyEpoch`", "dev", _mesh_epoch,
        allowed={f"random:RandomBytes {n}": RANDOM_KEEPERS for n in
                 ("aws-fra-key", "gcp-fra-key", "hetzner-nbg-key", "laptop-key", "wgmesh-psk-root")}),
    Row("gcp-zone", "GCP `zone` (`gcp-fra` to europe-west3-b)", "dev", _gcp_zone,
        allowed={"gcp:Instance gcp-fra": GCP_ZONE}),
    Row("hcloud-location", "Hetzner location (`hetzner-nbg` nbg1 to fsn1)", "dev", _hetzner_location,
        allowed=dict.fromkeys(HCLOUD_MOVED, HCLOUD_LOCATION)),
    Row("size", "`size` of every node", "dev", _sizes),
    Row("image", "`image` of every node (ubuntu-22.04)", "dev", _image),
    Row("gateway", "`gateway: true` (`hetzner-nbg`)", "dev", _gateway),
    Row("masquerade", "`masquerade: false` (jumpbox stack, `jump-aws`)", "jumpbox", _masquerade_off),
    Row("subnets", "`subnets`: a second subnet behind `aws-fra`", "dev", _second_subnet),
    Row("first-subnet-gcp", "`subnets`: the first routed subnet in a GCP region (`gcp-fra`)", "dev",
        _first_subnet_gcp),
    Row("cidr6", "`cidr6` on", "dev", _cidr6,
        allowed={"aws:Instance aws-fra": AWS_IPV6, "aws:EipAssociation aws-fra-eip-assoc": EIP_ASSOC,
                 "gcp:Instance gcp-fra": GCP_IPV6}),
    Row("endpoints", "`endpoints: ipv6` (ipv6 stack, from ipv4)", "ipv6", _endpoints_v6,
        before=_endpoints_v4),
    Row("admin-cidrs", "`adminCidrs`: add one", "dev", _admin_cidrs),
    Row("ssh-key-add", "admin key rotation, phase 1: add the new key to `sshPublicKeys`", "dev",
        _add_admin_key),
    Row("ssh-key-switch", "admin key rotation, phase 2: new `sshPrivateKey`, old public key dropped",
        "dev", _switch_admin_key, before=_add_admin_key),
    Row("ssh-key-reorder", "`sshPublicKeys`: reorder two keys", "dev", _reorder_admin_keys,
        before=_add_admin_key),
    Row("replace-vm", "`pulumi up --replace` of a VM (`aws-fra`)", "dev", _nothing,
        allowed={"aws:Instance aws-fra": REPLACE_ASKED, "aws:EipAssociation aws-fra-eip-assoc": EIP_ASSOC},
        replace=frozenset({"aws:Instance aws-fra"})),
    Row("live-on", "`liveUpdates` on", "dev", _live_on, before=_live_off),
    Row("live-off", "`liveUpdates` off", "dev", _live_off),
    Row("second-router", "a second router in a region (`aws-fra2` with `subnets`)", "dev", _second_router),
    Row("replace-network", "the same, with `replaceNetworks: [aws-eu-central-1]`", "dev",
        _second_router_replacing, allowed=dict.fromkeys(
            ("aws:Vpc aws-eu-central-1-vpc", "aws:Subnet aws-eu-central-1-subnet",
             "aws:RouteTable aws-eu-central-1-rt", "aws:RouteTableAssociation aws-eu-central-1-rta",
             "aws:Route aws-eu-central-1-default", "aws:InternetGateway aws-eu-central-1-igw",
             "aws:SecurityGroup aws-eu-central-1-base-roaming", "aws:SecurityGroup aws-eu-central-1-wg-mesh",
             "aws:Instance aws-fra", "aws:EipAssociation aws-fra-eip-assoc"),
            "the user listed the site in `replaceNetworks`: a VPC's CIDR cannot change (aws_vpc "
            "`cidr_block` ForceNew), so everything in it is made anew")),
)  # fmt: skip
ROW = {r.key: r for r in ROWS}


def configs(row: Row) -> tuple[dict[str, str], dict[str, str]]:
    before = load(row.stack)
    row.before(before)
    after = load(row.stack)
    row.before(after)
    row.after(after)
    return before.config(), after.config()


@cache
def base_run(stack: str, before: str) -> ProgramRun:
    """One `before` run per distinct config (most rows start from the plain dev stack)."""
    run = run_program(stack, json.loads(before), secret_keys=SECRET_KEYS)
    assert run.error is None, run.error
    return run


@cache
def outcome(key: str) -> Outcome:
    row = ROW[key]
    before, after = configs(row)
    first = base_run(row.stack, json.dumps(before, sort_keys=True))
    return simulate(row.stack, before, after, secret_keys=SECRET_KEYS, first=first, force=row.replace)
