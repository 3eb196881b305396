"""Firewalls at scale under mocks: shared objects that fit the clouds' default limits.

Full meshes of 60 and 150 nodes over three clouds (every node roaming-reachable, as the
generator's two clients attach to every node), the same without clients, a hub topology of
150 nodes, and `endpoints: ipv6` at 132 nodes. For each run: the footprint the quota planner
reads equals what the program registered, every captured resource passes the limit checks,
and every node admits WireGuard from exactly its peers (and possibly itself). Adding a node
to a full mesh renames no firewall and changes no other node's attachments.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable

import pulumi
import pytest
import synthetic_stacks as synthetic
from program_expectations import (
    applied_firewalls,
    assert_firewalls_open_exactly_what_the_plan_needs,
    captured_footprint,
    only_providers,
    plan_of,
)
from wgmesh_mocks import ProgramRun, reveal, run_program

from components.firewall import firewall_footprint
from components.firewall_limits import (
    AWS_GROUPS_PER_INTERFACE,
    AWS_RULES_PER_GROUP,
    CHECKS,
)
from mesh.plan_types import MeshPlan

Run = tuple[ProgramRun, MeshPlan]
SG = "aws:ec2/securityGroup:SecurityGroup"
GCP_FW = "gcp:compute/firewall:Firewall"
HCLOUD_FW = "hcloud:index/firewall:Firewall"


def with_mesh(config: dict[str, str], **settings: object) -> dict[str, str]:
    mesh = json.loads(config["wgmesh:mesh"])
    mesh.update(settings)
    return {**config, "wgmesh:mesh": json.dumps(mesh)}


CONFIGS: dict[str, Callable[[], dict[str, str]]] = {
    "full60": lambda: synthetic.three_clouds(60, quotas=synthetic.raised_quotas(60)),
    "full61": lambda: synthetic.three_clouds(61, quotas=synthetic.raised_quotas(61)),
    "full150": lambda: synthetic.three_clouds(150, quotas=synthetic.raised_quotas(150)),
    "full150-no-clients": lambda: synthetic.three_clouds(150, clients=0, quotas=synthetic.raised_quotas(150)),
    "hub150": lambda: synthetic.three_clouds(150, gcp_hubs=True, quotas=synthetic.raised_quotas(150)),
    "ipv6-132": lambda: with_mesh(
        synthetic.three_clouds(132, quotas=synthetic.raised_quotas(132)), endpoints="ipv6"
    ),
}


@pytest.fixture(scope="module")
def runs() -> dict[str, Run]:
    out = {}
    for name, make in CONFIGS.items():
        config = make()
        run = run_program(name, config)
        assert run.error is None, f"{name}: {run.error!r}"
        out[name] = (run, plan_of(config))
    return out


@pytest.mark.parametrize("case", list(CONFIGS))
def test_the_footprint_is_what_the_program_registers(runs: dict[str, Run], case: str) -> None:
    run, plan = runs[case]
    footprint = firewall_footprint(plan)
    assert footprint.aws_groups and footprint.gcp_firewalls and footprint.hcloud_firewalls
    assert footprint == captured_footprint(run)


@pytest.mark.parametrize("case", list(CONFIGS))
def test_every_firewall_object_fits_the_clouds_default_limits(runs: dict[str, Run], case: str) -> None:
    run, _ = runs[case]
    checked: Counter[str] = Counter()
    for r in run.resources:
        if r.type in CHECKS:
            checked[r.type] += 1
            assert CHECKS[r.type](reveal(r.inputs)) == [], f"{r.type} {r.name}"
    assert set(checked) == set(CHECKS)
    fp = captured_footprint(run)
    assert max(fp.aws_rules_per_group.values()) <= AWS_RULES_PER_GROUP
    assert max(fp.aws_groups_per_interface.values()) <= AWS_GROUPS_PER_INTERFACE


@pytest.mark.parametrize("case", list(CONFIGS))
def test_every_node_admits_wireguard_from_its_peers_only(runs: dict[str, Run], case: str) -> None:
    assert_firewalls_open_exactly_what_the_plan_needs(*runs[case])


def test_gcp_and_hetzner_firewall_counts_do_not_grow_with_the_mesh(runs: dict[str, Run]) -> None:
    small, big = captured_footprint(runs["full60"][0]), captured_footprint(runs["full150"][0])
    assert (small.gcp_firewalls, small.hcloud_firewalls) == (big.gcp_firewalls, big.hcloud_firewalls)
    # GCP: SSH, ICMP, WireGuard from the mesh, from roaming clients (IPv4 and IPv6): 5 rules.
    # Hetzner: base, wg-mesh, wg-roaming.
    assert (big.gcp_firewalls, big.hcloud_firewalls) == (5, 3)
    # AWS: base-roaming and the mesh's 150 /32s in groups of 60, per region.
    assert set(big.aws_groups.values()) == {4} and set(big.aws_rules_per_group.values()) == {60}
    assert set(big.aws_groups_per_interface.values()) == {4}
    assert set(small.aws_groups_per_interface.values()) == {2}


def test_hub_topology_needs_two_wireguard_classes(runs: dict[str, Run]) -> None:
    run, plan = runs["hub150"]
    names = {f.name for f in run.of_type(GCP_FW)} | {f.name for f in run.of_type(HCLOUD_FW)}
    assert {n for n in names if "-wg-" in n and "roaming" not in n} == {
        "wgmesh-gcp-wg-mesh",  # the hubs (all on GCP here) admit every node
        "wgmesh-hcloud-wg-hubs",  # Hetzner spokes admit the hubs
    }
    spoke = next(n for n in plan.spec.nodes if n.cloud == "aws")
    assert {
        g.name.removeprefix(f"aws-{spoke.region}-") for g in applied_firewalls(run, spoke.name, "aws")
    } == {
        "base",
        "wg-hubs",
    }


def object_class(name: str) -> str:
    """A firewall's name without its chunk number (`aws-eu-west-1-wg-mesh-2` -> `...-wg-mesh`)."""
    return re.sub(r"-\d+$", "", name) if "-wg-" in name else name


def attachments(run: ProgramRun, plan: MeshPlan) -> dict[str, set[str]]:
    """Per cloud node, the classes of the firewall objects applied to it."""
    return {
        n.name: {object_class(fw.name) for fw in applied_firewalls(run, n.name, n.cloud)}
        for n in plan.nodes
        if n.cloud != "lab"
    }


def test_adding_a_node_renames_no_firewall_and_moves_no_node(runs: dict[str, Run]) -> None:
    """60 -> 61 nodes: the 61st /32 opens a second AWS group of the same class (`wg-mesh-2`); no
    name goes away and every existing node keeps its classes."""
    (before, before_plan), (after, after_plan) = runs["full60"], runs["full61"]
    added = {n.name for n in after_plan.nodes} - {n.name for n in before_plan.nodes}
    assert len(added) == 1
    kinds = (SG, GCP_FW, HCLOUD_FW)
    old_names = {(r.type, r.name) for r in before.resources if r.type in kinds}
    new_names = {(r.type, r.name) for r in after.resources if r.type in kinds}
    assert old_names <= new_names
    assert {name for _, name in new_names - old_names} == {
        f"aws-{r}-wg-mesh-2" for r in synthetic.AWS_REGIONS
    }
    old, new = attachments(before, before_plan), attachments(after, after_plan)
    assert {n: new[n] for n in old} == old


def test_a_firewall_limit_is_refused_at_preview_with_a_keyed_line() -> None:
    """61 IPv4 adminCidrs (+1 ICMP rule) overflow the AWS base group: refused before any resource."""
    config = synthetic.three_clouds(3, clients=0)
    config = with_mesh(config, adminCidrs=[f"198.51.100.{i}/32" for i in range(61)])
    run = run_program("too-many-admins", config)
    assert isinstance(run.error, pulumi.RunError), repr(run.error)
    message = str(run.error)
    assert message.startswith("wgmesh:mesh.adminCidrs: ") and "\n" not in message
    assert "62 rules" in message and "60 per group" in message
    assert only_providers(run) == []


VMS = {
    "aws:ec2/instance:Instance": SG,
    "gcp:compute/instance:Instance": GCP_FW,
    "hcloud:index/server:Server": HCLOUD_FW,
}


def test_every_vm_waits_for_every_firewall_that_guards_it(runs: dict[str, Run]) -> None:
    """A VM (and the live-update commands after it) starts only once its rules are in place.

    AWS groups and Hetzner firewalls are inputs of the VM; GCP rules apply by network tag, so the
    program orders them explicitly: a rule's update (CI's runner address added to adminCidrs for
    one `up`) lands before the commands that need it dial SSH.
    """
    run, _ = runs["full60"]
    checked = 0
    for vm_type, fw_type in VMS.items():
        firewalls = {r.urn for r in run.of_type(fw_type)}
        assert firewalls
        for vm in run.of_type(vm_type):
            guarding = firewalls if fw_type == GCP_FW else _referenced(run, vm, fw_type)
            assert guarding and guarding <= set(vm.dependencies), (
                vm.name,
                sorted(guarding - set(vm.dependencies)),
            )
            checked += 1
    assert checked == 60


def _referenced(run: ProgramRun, vm: object, fw_type: str) -> set[str]:
    """The firewalls whose id appears in the VM's inputs (AWS vpcSecurityGroupIds, Hetzner firewallIds)."""
    text = json.dumps(reveal(vm.inputs))  # type: ignore[attr-defined]
    return {r.urn for r in run.of_type(fw_type) if str(r.id) in text}
