"""Every stack change of README's change table, run as `pulumi up` would carry it out.

Each row (tests/program/change_rows.py) runs the real program for the config before and after
through the engine simulator (engine_sim.py: ignoreChanges keeps stored values, ForceNew inputs
replace, replaced ids ripple until nothing more changes). The tests assert what today's program
does per row: created, updated, replaced and deleted resources, and what each running node does.
Where a row shows a defect issue 13 names, a strict xfail states the outcome the issue wants, so
it flips (and fails as XPASS) once the fix lands: then drop its xfail and update `TODAY`
(`python -m bench.changes --sets` prints every row's measured sets) and the README (`make change-table`).
"""

from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from change_rows import ROWS, outcome
from engine_sim import NETWORK_TYPES, VM_TYPES, short

from bench.changes import BLOCK, README, readme_table

LIVE = ("aws-fra", "gcp-fra", "hetzner-nbg")
STEPS = ("peers", "sync", "health")
APPLY = "runs peers+sync+health"
SG = "aws:SecurityGroup aws-eu-central-1"
FIREWALLS = {f"{SG}-wg-mesh", "gcp:Firewall wgmesh-gcp-wg-mesh", "hcloud:Firewall wgmesh-hcloud-wg-mesh"}


def cmds(nodes: tuple[str, ...] = LIVE, steps: tuple[str, ...] = STEPS) -> frozenset[str]:
    return frozenset(f"command:Command {n}-{s}" for n in nodes for s in steps)


def node_resources(node: str, ip: str = "aws") -> frozenset[str]:
    """An AWS node's own resources (key, IP, VM, association, component, commands)."""
    assert ip == "aws"
    return frozenset(
        {f"aws:Eip {node}-eip", f"aws:EipAssociation {node}-eip-assoc", f"aws:Instance {node}",
         f"random:RandomBytes {node}-key", f"wgmesh:Node {node}", f"wgmesh:WireGuardKey {node}"}
    ) | cmds((node,))  # fmt: skip


LIVE_COMPONENTS = frozenset(
    {"wgmesh:LiveSync wgmesh-sync", "wgmesh:LiveUpdates wgmesh", "wgmesh:MeshHealth wgmesh-health"}
)
ALL_APPLY = {n: APPLY for n in LIVE}


@dataclass(frozen=True)
class Expect:
    created: frozenset[str] = frozenset()
    updated: frozenset[str] = frozenset()
    replaced: frozenset[str] = frozenset()
    deleted: frozenset[str] = frozenset()
    nodes: dict[str, str] = field(default_factory=dict)


# What today's program does, row by row (reviewed against the engine's rules and the clouds' docs).
TODAY: dict[str, Expect] = {
    "add-node": Expect(
        created=node_resources("aws-fra2"),
        updated=cmds() | FIREWALLS,
        nodes={**ALL_APPLY, "aws-fra2": "new"},
    ),
    "remove-node": Expect(
        updated=cmds(("aws-fra", "gcp-fra")) | {f"{SG}-wg-mesh", "gcp:Firewall wgmesh-gcp-wg-mesh"},
        deleted=cmds(("hetzner-nbg",))
        | {
            "hcloud:Firewall wgmesh-hcloud-base",
            "hcloud:Firewall wgmesh-hcloud-wg-mesh",
            "hcloud:Firewall wgmesh-hcloud-wg-roaming",
            "hcloud:PrimaryIp hetzner-nbg-ip",
            "hcloud:Server hetzner-nbg",
            "hcloud:SshKey wgmesh-hcloud-admin-0",
            "random:RandomBytes hetzner-nbg-key",
            "wgmesh:Node hetzner-nbg",
            "wgmesh:Project wgmesh-hcloud",
            "wgmesh:WireGuardKey hetzner-nbg",
        },
        nodes={"aws-fra": APPLY, "gcp-fra": APPLY, "hetzner-nbg": "gone"},
    ),
    "add-client": Expect(
        created=frozenset({"random:RandomBytes phone-key", "wgmesh:WireGuardKey phone"}),
        updated=cmds(),
        nodes=ALL_APPLY,
    ),
    "remove-client": Expect(  # the last roaming peer: the world-open WireGuard firewalls go
        created=frozenset({f"{SG}-base"}),
        updated=cmds() | {"aws:Instance aws-fra", "gcp:Instance gcp-fra", "hcloud:Server hetzner-nbg"},
        deleted=frozenset(
            {
                f"{SG}-base-roaming",
                "gcp:Firewall wgmesh-gcp-wg-roaming",
                "gcp:Firewall wgmesh-gcp-wg-roaming6",
                "hcloud:Firewall wgmesh-hcloud-wg-roaming",
                "random:RandomBytes laptop-key",
                "wgmesh:WireGuardKey laptop",
            }
        ),
        nodes=ALL_APPLY,
    ),
    "node-key-epoch": Expect(
        updated=cmds(), replaced=frozenset({"random:RandomBytes gcp-fra-key"}), nodes=ALL_APPLY
    ),
    "mesh-key-epoch": Expect(
        updated=cmds(),
        replaced=frozenset(
            f"random:RandomBytes {n}"
            for n in ("aws-fra-key", "gcp-fra-key", "hetzner-nbg-key", "laptop-key", "wgmesh-psk-root")
        ),
        nodes=ALL_APPLY,
    ),
    "gcp-zone": Expect(
        replaced=frozenset({"gcp:Instance gcp-fra"}),
        nodes={"aws-fra": "-", "gcp-fra": "replaced: boots its first user data", "hetzner-nbg": "-"},
    ),
    "hcloud-location": Expect(  # a new primary IP: every peer learns the new endpoint
        updated=cmds() | FIREWALLS,
        replaced=frozenset({"hcloud:Server hetzner-nbg", "hcloud:PrimaryIp hetzner-nbg-ip"}),
        nodes={**ALL_APPLY, "hetzner-nbg": f"replaced: boots its first user data; {APPLY}"},
    ),
    "size": Expect(
        updated=frozenset({"aws:Instance aws-fra", "gcp:Instance gcp-fra", "hcloud:Server hetzner-nbg"}),
        nodes={
            "aws-fra": "restarts (instanceType)",
            "gcp-fra": "restarts (machineType)",
            "hetzner-nbg": "restarts (serverType)",
        },
    ),
    "image": Expect(nodes=dict.fromkeys(LIVE, "-")),  # ignored: only new or replaced VMs take it
    "gateway": Expect(nodes={"aws-fra": "-", "gcp-fra": "-", "hetzner-nbg": "stale host config"}),
    "masquerade": Expect(nodes={"hetzner-nbg": "-", "jump-aws": "stale host config", "router-gcp": "-"}),
    "subnets": Expect(
        updated=cmds(("gcp-fra", "hetzner-nbg")) | cmds(("aws-fra",), ("health",)),
        nodes={"aws-fra": "runs health", "gcp-fra": APPLY, "hetzner-nbg": APPLY},
    ),
    "first-subnet-gcp": Expect(
        created=frozenset(
            {
                "aws:Route aws-fra-rt-10-0-9-0-24",
                "gcp:Route gcp-fra-rt-10-0-4-0-24",
                "gcp:Route gcp-fra-rt-10-77-0-0-24",
            }
        ),
        updated=cmds(("aws-fra", "hetzner-nbg")) | cmds(("gcp-fra",), ("health",)) | {"gcp:Instance gcp-fra"},
        replaced=frozenset({"gcp:Subnetwork wgmesh-gcp-europe-west3"}),
        nodes={
            "aws-fra": APPLY,
            "gcp-fra": "restarts (canIpForward, networkInterfaces); runs health",
            "hetzner-nbg": APPLY,
        },
    ),
    "cidr6": Expect(
        created=frozenset(
            {
                "aws:Route aws-eu-central-1-default6",
                "gcp:Address gcp-fra-ip6",
                "gcp:Firewall wgmesh-gcp-icmp6",
                "hcloud:PrimaryIp hetzner-nbg-ip6",
            }
        ),
        updated=cmds()
        | {
            "aws:Route aws-fra-rt-10-77-0-0-24",
            f"{SG}-base-roaming",
            "aws:Subnet aws-eu-central-1-subnet",
            "aws:Vpc aws-eu-central-1-vpc",
            "gcp:Subnetwork wgmesh-gcp-europe-west3",
            "hcloud:Server hetzner-nbg",
        },
        replaced=frozenset(
            {"aws:Instance aws-fra", "aws:EipAssociation aws-fra-eip-assoc", "gcp:Instance gcp-fra"}
        ),
        nodes={
            "aws-fra": f"replaced: boots its first user data (outdated); {APPLY}; stale host config",
            "gcp-fra": f"replaced: boots its first user data (outdated); {APPLY}; stale host config",
            "hetzner-nbg": f"restarts (publicNets); {APPLY}; stale host config",
        },
    ),
    "endpoints": Expect(updated=cmds() | FIREWALLS, nodes=ALL_APPLY),
    "admin-cidrs": Expect(
        updated=frozenset(
            {f"{SG}-base-roaming", "gcp:Firewall wgmesh-gcp-ssh", "hcloud:Firewall wgmesh-hcloud-base"}
        ),
        nodes=dict.fromkeys(LIVE, "-"),
    ),
    "ssh-key-rotate": Expect(
        replaced=frozenset({"hcloud:SshKey wgmesh-hcloud-admin-0"}),
        nodes=dict.fromkeys(LIVE, "stale host config"),
    ),
    "ssh-key-reorder": Expect(
        replaced=frozenset({"hcloud:SshKey wgmesh-hcloud-admin-0", "hcloud:SshKey wgmesh-hcloud-admin-1"}),
        nodes=dict.fromkeys(LIVE, "stale host config"),
    ),
    "replace-vm": Expect(  # the route through its network interface follows the new instance
        updated=frozenset({"aws:Route aws-fra-rt-10-77-0-0-24"}),
        replaced=frozenset({"aws:Instance aws-fra", "aws:EipAssociation aws-fra-eip-assoc"}),
        nodes={"aws-fra": "replaced: boots its first user data", "gcp-fra": "-", "hetzner-nbg": "-"},
    ),
    "live-on": Expect(created=cmds() | LIVE_COMPONENTS, nodes=ALL_APPLY),
    "live-off": Expect(deleted=cmds() | LIVE_COMPONENTS, nodes=dict.fromkeys(LIVE, "-")),
    "second-router": Expect(
        created=node_resources("aws-fra2"),
        updated=cmds()
        | {
            "aws:InternetGateway aws-eu-central-1-igw",
            "gcp:Firewall wgmesh-gcp-wg-mesh",
            "hcloud:Firewall wgmesh-hcloud-wg-mesh",
        },
        replaced=frozenset(
            {
                "aws:Instance aws-fra",
                "aws:EipAssociation aws-fra-eip-assoc",
                "aws:Route aws-eu-central-1-default",
                "aws:RouteTable aws-eu-central-1-rt",
                "aws:RouteTableAssociation aws-eu-central-1-rta",
                f"{SG}-base-roaming",
                f"{SG}-wg-mesh",
                "aws:Subnet aws-eu-central-1-subnet",
                "aws:Vpc aws-eu-central-1-vpc",
            }
        ),
        deleted=frozenset({"aws:Route aws-fra-rt-10-77-0-0-24"}),
        nodes={
            **ALL_APPLY,
            "aws-fra": f"replaced: boots its first user data (outdated); {APPLY}",
            "aws-fra2": "new",
        },
    ),
}
KEYS = [r.key for r in ROWS]


def test_every_row_has_an_expectation() -> None:
    assert sorted(TODAY) == sorted(KEYS)
    replacing_vms = {
        k
        for k, e in TODAY.items()
        if any(r.split(":")[1].split()[0] in ("Instance", "Server") for r in e.replaced)
    }
    assert replacing_vms == set(VM_ROWS)


@pytest.mark.parametrize("key", KEYS)
def test_row(key: str) -> None:
    """The created / updated / replaced / deleted sets and each node's part, as measured today."""
    o, want = outcome(key), TODAY[key]
    got = Expect(o.created, o.updated, o.replaced, o.deleted, o.nodes)
    assert got == want


# ----------------------------------------------------------------------------- what the issue wants


def _xfail(reason: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(strict=True, reason=f"issue 13: {reason}")


SITES = "site networks are sticky (a router's subnet never moves a VPC or subnetwork holding VMs)"
HOST = "each apply carries the node's whole host config (nft, sysctl, RA guard, authorized keys)"
HCLOUD_KEYS = "Hetzner SSH keys are not named by list index"
REPLACED = "a replaced VM re-runs its apply commands (their inputs hold the VM's id)"


def _wanted(xfails: dict[str, str]) -> list[object]:
    return [pytest.param(k, marks=_xfail(xfails[k])) if k in xfails else k for k in KEYS]


@pytest.mark.parametrize("key", _wanted({"second-router": SITES, "first-subnet-gcp": SITES}))
def test_no_network_or_vm_is_replaced_unless_the_cloud_requires_it(key: str) -> None:
    """The acceptance rule: a VM or network is replaced only where the row cites the cloud's docs."""
    row, o = next(r for r in ROWS if r.key == key), outcome(key)
    heavy = {
        short(c.after) for c in o.diff.changed if c.replacing and c.before.type in VM_TYPES | NETWORK_TYPES
    }
    assert heavy - set(row.allowed) == set()


@pytest.mark.parametrize(
    "key",
    _wanted(
        {"gateway": HOST, "masquerade": HOST, "cidr6": HOST, "ssh-key-rotate": HOST, "ssh-key-reorder": HOST}
    ),
)
def test_no_running_node_is_left_stale(key: str) -> None:
    """After `up` every node runs what the stack says: nothing left for a manual step."""
    o = outcome(key)
    assert {n: e for n, e in o.nodes.items() if "stale" in e} == {}


VM_ROWS = ("gcp-zone", "replace-vm", "hcloud-location", "cidr6", "second-router")  # rows replacing a VM


@pytest.mark.parametrize(
    "key", [*(pytest.param(k, marks=_xfail(REPLACED)) for k in VM_ROWS[:2]), *VM_ROWS[2:]]
)
def test_a_replaced_vm_runs_its_apply_commands(key: str) -> None:
    """Its apply commands run after it (so it converges from its first user data), with live updates on."""
    o = outcome(key)
    vms = {c.before.name for c in o.diff.changed if c.replacing and c.before.type in VM_TYPES}
    assert vms
    assert {n: sorted(s for s in o.commands if s.startswith(n + "-")) for n in vms} == {
        n: [f"{n}-health", f"{n}-peers", f"{n}-sync"] for n in vms
    }


@_xfail(HCLOUD_KEYS)
def test_reordering_admin_keys_replaces_nothing() -> None:
    assert outcome("ssh-key-reorder").replaced == frozenset()


# ----------------------------------------------------------------------------- the README


def test_the_readme_change_table_is_what_the_rows_measure() -> None:
    match = BLOCK.search(README.read_text(encoding="utf-8"))
    assert match is not None, "README.md lost its <!-- change-table --> block"
    table = readme_table()
    shown = "\n".join(difflib.unified_diff(match.group(2).splitlines(), table.splitlines(), lineterm="", n=0))
    assert match.group(2) == table, f"README's change table is stale: run `make change-table`\n{shown}"
