"""Every stack change of docs/changes.md's change table, run as `pulumi up` would carry it out.

Each row (tests/program/change_rows.py) runs the real program for the config before and after
through the engine simulator (engine_sim.py: ignoreChanges keeps stored values, ForceNew inputs
replace, replaced ids ripple until nothing more changes). The tests assert what today's program
does per row: created, updated, replaced and deleted resources, and what each running node does.
Besides the sets, three rules hold on every row: no VM or network is replaced unless the row cites
the cloud's documentation for it, no running node is left with a stale config, and every replaced
VM re-runs its apply commands. After an intended change, update `TODAY` (`python -m bench.changes
--sets` prints every row's measured sets) and docs/changes.md (`make change-table`).
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

from bench.changes import BLOCK, CHANGES_DOC, change_table

LIVE = ("aws-fra", "gcp-fra", "hetzner-nbg")
STEPS = ("peers", "sync", "health")
APPLY = "runs peers+sync+health"


def cmds(nodes: tuple[str, ...] = LIVE, steps: tuple[str, ...] = STEPS) -> frozenset[str]:
    return frozenset(f"command:Command {n}-{s}" for n in nodes for s in steps)


ALL_APPLY = {n: APPLY for n in LIVE}
# What adding the AWS node aws-fra2 creates (the add-node and second-router rows), and the
# shared WireGuard firewalls every add or move of a peer's IP updates.
NEW_NODE = cmds(("aws-fra2",)) | {
    "aws:Eip aws-fra2-eip",
    "aws:EipAssociation aws-fra2-eip-assoc",
    "aws:Instance aws-fra2",
    "random:RandomBytes aws-fra2-key",
    "wgmesh:Node aws-fra2",
    "wgmesh:WireGuardKey aws-fra2",
}
WG_FIREWALLS = frozenset(
    {
        "aws:SecurityGroup aws-eu-central-1-wg-mesh",
        "gcp:Firewall wgmesh-gcp-wg-mesh",
        "hcloud:Firewall wgmesh-hcloud-wg-mesh",
    }
)


@dataclass(frozen=True)
class Expect:
    created: frozenset[str] = frozenset()
    updated: frozenset[str] = frozenset()
    replaced: frozenset[str] = frozenset()
    deleted: frozenset[str] = frozenset()
    nodes: dict[str, str] = field(default_factory=dict)


# What the program does, row by row: measured by the engine simulator (`python -m bench.changes
# --sets`) and reviewed against the engine's rules and the clouds' docs before being written here.
TODAY: dict[str, Expect] = {
    "add-node": Expect(
        created=NEW_NODE,
        updated=cmds() | WG_FIREWALLS,
        nodes={
            **ALL_APPLY,
            "aws-fra2": "new",
        },
    ),
    "remove-node": Expect(
        updated=cmds(("aws-fra", "gcp-fra"))
        | {
            "aws:SecurityGroup aws-eu-central-1-wg-mesh",
            "gcp:Firewall wgmesh-gcp-wg-mesh",
        },
        deleted=cmds(("hetzner-nbg",))
        | {
            "hcloud:Firewall wgmesh-hcloud-base",
            "hcloud:Firewall wgmesh-hcloud-wg-mesh",
            "hcloud:Firewall wgmesh-hcloud-wg-roaming",
            "hcloud:PrimaryIp hetzner-nbg-ip",
            "hcloud:Server hetzner-nbg",
            "hcloud:SshKey wgmesh-hcloud-ssh",
            "random:RandomBytes hetzner-nbg-key",
            "random:RandomBytes wgmesh-hcloud-ssh-seed",
            "wgmesh:Node hetzner-nbg",
            "wgmesh:Project wgmesh-hcloud",
            "wgmesh:WireGuardKey hetzner-nbg",
        },
        nodes={
            "aws-fra": "runs peers+sync+health",
            "gcp-fra": "runs peers+sync+health",
            "hetzner-nbg": "gone",
        },
    ),
    "add-client": Expect(
        created=frozenset(
            {
                "random:RandomBytes phone-key",
                "wgmesh:WireGuardKey phone",
            }
        ),
        updated=cmds(),
        nodes=ALL_APPLY,
    ),
    "remove-client": Expect(
        created=frozenset(
            {
                "aws:SecurityGroup aws-eu-central-1-base",
            }
        ),
        updated=cmds()
        | {
            "aws:Instance aws-fra",
            "gcp:Instance gcp-fra",
            "hcloud:Server hetzner-nbg",
        },
        deleted=frozenset(
            {
                "aws:SecurityGroup aws-eu-central-1-base-roaming",
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
        updated=cmds(),
        replaced=frozenset(
            {
                "random:RandomBytes gcp-fra-key",
            }
        ),
        nodes=ALL_APPLY,
    ),
    "mesh-key-epoch": Expect(
        updated=cmds(),
        replaced=frozenset(
            {
                "random:RandomBytes aws-fra-key",
                "random:RandomBytes gcp-fra-key",
                "random:RandomBytes hetzner-nbg-key",
                "random:RandomBytes laptop-key",
                "random:RandomBytes wgmesh-psk-root",
            }
        ),
        nodes=ALL_APPLY,
    ),
    "gcp-zone": Expect(
        updated=cmds(("gcp-fra",)),
        replaced=frozenset(
            {
                "gcp:Instance gcp-fra",
            }
        ),
        nodes={
            "aws-fra": "-",
            "gcp-fra": "replaced: boots its first user data; runs peers+sync+health",
            "hetzner-nbg": "-",
        },
    ),
    "hcloud-location": Expect(
        updated=cmds() | WG_FIREWALLS,
        replaced=frozenset(
            {
                "hcloud:PrimaryIp hetzner-nbg-ip",
                "hcloud:Server hetzner-nbg",
            }
        ),
        nodes={
            "aws-fra": "runs peers+sync+health",
            "gcp-fra": "runs peers+sync+health",
            "hetzner-nbg": "replaced: boots its first user data; runs peers+sync+health",
        },
    ),
    "size": Expect(
        updated=frozenset(
            {
                "aws:Instance aws-fra",
                "gcp:Instance gcp-fra",
                "hcloud:Server hetzner-nbg",
            }
        ),
        nodes={
            "aws-fra": "restarts (instanceType)",
            "gcp-fra": "restarts (machineType)",
            "hetzner-nbg": "restarts (serverType)",
        },
    ),
    "image": Expect(
        nodes={
            "aws-fra": "-",
            "gcp-fra": "-",
            "hetzner-nbg": "-",
        },
    ),
    "gateway": Expect(
        updated=cmds(("hetzner-nbg",))
        | {
            "command:Command aws-fra-health",
            "command:Command gcp-fra-health",
        },
        nodes={
            "aws-fra": "runs health",
            "gcp-fra": "runs health",
            "hetzner-nbg": "runs peers+sync+health",
        },
    ),
    "masquerade": Expect(
        updated=cmds(("jump-aws",))
        | {
            "command:Command hetzner-nbg-health",
            "command:Command router-gcp-health",
        },
        nodes={
            "hetzner-nbg": "runs health",
            "jump-aws": "runs peers+sync+health",
            "router-gcp": "runs health",
        },
    ),
    "subnets": Expect(
        updated=cmds(("gcp-fra", "hetzner-nbg"))
        | {
            "command:Command aws-fra-health",
        },
        nodes={
            "aws-fra": "runs health",
            "gcp-fra": "runs peers+sync+health",
            "hetzner-nbg": "runs peers+sync+health",
        },
    ),
    "first-subnet-gcp": Expect(
        created=frozenset(
            {
                "aws:Route aws-fra-rt-10-0-9-0-24",
            }
        ),
        updated=cmds(("aws-fra", "hetzner-nbg"))
        | {
            "command:Command gcp-fra-health",
            "gcp:Instance gcp-fra",
        },
        nodes={
            "aws-fra": "runs peers+sync+health",
            "gcp-fra": "restarts (canIpForward); runs health",
            "hetzner-nbg": "runs peers+sync+health",
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
            "aws:SecurityGroup aws-eu-central-1-base-roaming",
            "aws:Subnet aws-eu-central-1-subnet",
            "aws:Vpc aws-eu-central-1-vpc",
            "gcp:Subnetwork wgmesh-gcp-europe-west3",
            "hcloud:Server hetzner-nbg",
        },
        replaced=frozenset(
            {
                "aws:EipAssociation aws-fra-eip-assoc",
                "aws:Instance aws-fra",
                "gcp:Instance gcp-fra",
            }
        ),
        nodes={
            "aws-fra": "replaced: boots its first user data (outdated); runs peers+sync+health",
            "gcp-fra": "replaced: boots its first user data (outdated); runs peers+sync+health",
            "hetzner-nbg": "restarts (publicNets); runs peers+sync+health",
        },
    ),
    "endpoints": Expect(
        updated=cmds() | WG_FIREWALLS,
        nodes=ALL_APPLY,
    ),
    "admin-cidrs": Expect(
        updated=frozenset(
            {
                "aws:SecurityGroup aws-eu-central-1-base-roaming",
                "gcp:Firewall wgmesh-gcp-ssh",
                "hcloud:Firewall wgmesh-hcloud-base",
            }
        ),
        nodes={
            "aws-fra": "-",
            "gcp-fra": "-",
            "hetzner-nbg": "-",
        },
    ),
    "ssh-key-add": Expect(
        updated=cmds(),
        nodes=ALL_APPLY,
    ),
    "ssh-key-switch": Expect(
        updated=cmds(),
        nodes=ALL_APPLY,
    ),
    "ssh-key-reorder": Expect(
        updated=cmds(),
        nodes=ALL_APPLY,
    ),
    "replace-vm": Expect(
        updated=cmds(("aws-fra",))
        | {
            "aws:Route aws-fra-rt-10-77-0-0-24",
        },
        replaced=frozenset(
            {
                "aws:EipAssociation aws-fra-eip-assoc",
                "aws:Instance aws-fra",
            }
        ),
        nodes={
            "aws-fra": "replaced: boots its first user data; runs peers+sync+health",
            "gcp-fra": "-",
            "hetzner-nbg": "-",
        },
    ),
    "live-on": Expect(
        created=cmds()
        | {
            "wgmesh:LiveSync wgmesh-sync",
            "wgmesh:LiveUpdates wgmesh",
            "wgmesh:MeshHealth wgmesh-health",
        },
        nodes=ALL_APPLY,
    ),
    "live-off": Expect(
        deleted=cmds()
        | {
            "wgmesh:LiveSync wgmesh-sync",
            "wgmesh:LiveUpdates wgmesh",
            "wgmesh:MeshHealth wgmesh-health",
        },
        nodes={
            "aws-fra": "-",
            "gcp-fra": "-",
            "hetzner-nbg": "-",
        },
    ),
    "second-router": Expect(
        created=NEW_NODE | {"aws:Route aws-fra-rt-10-0-8-0-24"},
        updated=cmds() | WG_FIREWALLS,
        nodes={
            **ALL_APPLY,
            "aws-fra2": "new",
        },
    ),
    "replace-network": Expect(
        created=NEW_NODE,
        updated=cmds()
        | {
            "aws:InternetGateway aws-eu-central-1-igw",
            "gcp:Firewall wgmesh-gcp-wg-mesh",
            "hcloud:Firewall wgmesh-hcloud-wg-mesh",
        },
        replaced=frozenset(
            {
                "aws:EipAssociation aws-fra-eip-assoc",
                "aws:Instance aws-fra",
                "aws:Route aws-eu-central-1-default",
                "aws:RouteTable aws-eu-central-1-rt",
                "aws:RouteTableAssociation aws-eu-central-1-rta",
                "aws:SecurityGroup aws-eu-central-1-base-roaming",
                "aws:SecurityGroup aws-eu-central-1-wg-mesh",
                "aws:Subnet aws-eu-central-1-subnet",
                "aws:Vpc aws-eu-central-1-vpc",
            }
        ),
        deleted=frozenset(
            {
                "aws:Route aws-fra-rt-10-77-0-0-24",
            }
        ),
        nodes={
            "aws-fra": "replaced: boots its first user data (outdated); runs peers+sync+health",
            "aws-fra2": "new",
            "gcp-fra": "runs peers+sync+health",
            "hetzner-nbg": "runs peers+sync+health",
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


@pytest.mark.parametrize("key", KEYS)
def test_no_network_or_vm_is_replaced_unless_the_cloud_requires_it(key: str) -> None:
    """The acceptance rule: a VM or network is replaced only where the row cites the cloud's docs."""
    row, o = next(r for r in ROWS if r.key == key), outcome(key)
    heavy = {
        short(c.after) for c in o.diff.changed if c.replacing and c.before.type in VM_TYPES | NETWORK_TYPES
    }
    assert heavy - set(row.allowed) == set()


@pytest.mark.parametrize("key", KEYS)
def test_no_running_node_is_left_stale(key: str) -> None:
    """After `up` every node runs what the stack says: nothing left for a manual step."""
    o = outcome(key)
    assert {n: e for n, e in o.nodes.items() if "stale" in e} == {}


VM_ROWS = ("gcp-zone", "replace-vm", "hcloud-location", "cidr6", "replace-network")  # rows replacing a VM


@pytest.mark.parametrize("key", VM_ROWS)
def test_a_replaced_vm_runs_its_apply_commands(key: str) -> None:
    """Its apply commands run after it (so it converges from its first user data), with live updates on."""
    o = outcome(key)
    vms = {r.name for r in o.replaced_resources if r.type in VM_TYPES}  # by an input or `--replace`
    assert vms
    assert {n: sorted(s for s in o.commands if s.startswith(n + "-")) for n in vms} == {
        n: [f"{n}-health", f"{n}-peers", f"{n}-sync"] for n in vms
    }


def test_reordering_admin_keys_replaces_nothing() -> None:
    assert outcome("ssh-key-reorder").replaced == frozenset()


# ----------------------------------------------------------------------------- docs/changes.md


def test_the_documented_change_table_is_what_the_rows_measure() -> None:
    match = BLOCK.search(CHANGES_DOC.read_text(encoding="utf-8"))
    assert match is not None, "docs/changes.md lost its <!-- change-table --> block"
    table = change_table()
    shown = "\n".join(difflib.unified_diff(match.group(2).splitlines(), table.splitlines(), lineterm="", n=0))
    assert match.group(2) == table, f"docs/changes.md table is stale: run `make change-table`\n{shown}"
