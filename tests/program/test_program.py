"""The real __main__.py for every stack file, under mocks: resources, wiring, secrets, policy."""

from __future__ import annotations

import difflib
import ipaddress
import os
from collections import Counter
from pathlib import Path

import pytest
import synthetic_stacks as synthetic
from plan_snapshot import UPDATE_ENV, path_for, render
from program_expectations import (
    MESH,
    STATIC_IP,
    VM_TYPE,
    assert_firewalls_open_exactly_what_the_plan_needs,
    captured_footprint,
    decode_aws_user_data,
    decoded_forms,
    endpoints,
    endpoints6,
    expected_type_counts,
    handed_user_data,
    key_material,
    plan_of,
    public_ip6,
    strings,
)
from wgmesh_mocks import REPO, ProgramRun, Resolved, is_secret, reveal, run_program, stack_config

from cloudinit.render import client_config, node_user_data, node_wg_conf
from components.firewall import GCP_NODE_TAG, firewall_footprint
from components.images import GCP_UBUNTU_PROJECT, ami_query, aws_arch, gcp_arch, gcp_family
from components.quota_catalog import AWS_QUOTAS
from mesh.plan_types import MeshPlan
from mesh.spec import NodeSpec
from policy.rules import MANDATORY_RULES, wireguard_world_only_for_roaming

Run = tuple[ProgramRun, MeshPlan]
WORLD = frozenset({"0.0.0.0/0", "::/0"})


STACK_FILES = sorted((REPO / "stacks").glob("Pulumi.*.yaml"))
STACKS = [p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in STACK_FILES]
# Shapes the example stacks lack; they get every check below, snapshots included.
SYNTHETIC = {"matrix": synthetic.matrix(), "big-user-data": synthetic.big_user_data(20)}
CASES = [*STACKS, *SYNTHETIC]


def case_config(case: str) -> dict[str, str]:
    if case in SYNTHETIC:
        return SYNTHETIC[case]
    return stack_config(REPO / "stacks" / f"Pulumi.{case}.yaml")


# The runs are made here (set_mocks is called inside run_program), not at import time.
@pytest.fixture(scope="session")
def program_runs() -> dict[str, tuple[ProgramRun, MeshPlan]]:
    """Each example stack file (and synthetic case), run once under mocks in this process."""
    out = {}
    for case in CASES:
        config = case_config(case)
        out[case] = (run_program(case, config), plan_of(config))
    return out


@pytest.fixture(params=CASES)
def stack_run(
    request: pytest.FixtureRequest, program_runs: dict[str, tuple[ProgramRun, MeshPlan]]
) -> tuple[ProgramRun, MeshPlan]:
    run, plan = program_runs[request.param]
    assert run.error is None, f"stack {request.param} failed under mocks: {run.error!r}"
    return run, plan


def test_no_resource_is_created_inside_an_apply(stack_run: Run) -> None:
    run, _ = stack_run
    assert run.resources, "the watch needs a run that created resources"
    assert run.created_in_apply == []


def test_a_resource_created_inside_an_apply_is_caught(tmp_path: Path) -> None:
    """The watch above can fail: a program that builds a resource in an apply is reported."""
    program = tmp_path / "__main__.py"
    program.write_text(
        "import pulumi, pulumi_random\n"
        "pulumi.Output.from_input(8).apply(lambda n: pulumi_random.RandomBytes('late', length=n))\n"
    )
    run = run_program("apply", {}, program)
    assert run.error is None, repr(run.error)
    assert run.created_in_apply == ["random:index/randomBytes:RandomBytes::late"]


def test_resource_set_matches_the_plan(stack_run: Run) -> None:
    run, plan = stack_run
    counts = Counter(r.type for r in run.resources)
    expected = expected_type_counts(plan)
    # Return routes vary with the plan: their own tests check them.
    for variable in ("aws:ec2/route:Route", "gcp:compute/route:Route"):
        counts.pop(variable, None)
        expected.pop(variable, None)
    assert counts == expected


def test_every_resource_hangs_under_the_mesh_component(stack_run: Run) -> None:
    """All but the explicit providers, made first (components/providers.py) so the catalog can
    ask the clouds before any other resource: they hang under the stack itself."""
    run, _ = stack_run
    by_urn = run.by_urn()
    mesh = run.one("wgmesh:index:WireGuardMesh", MESH)
    root = f"pulumi:pulumi:Stack::wgmesh-{run.stack}"
    assert mesh.parent.endswith(root)
    for r in run.resources:
        if r.type.startswith("pulumi:providers:"):
            assert r.parent.endswith(root), f"{r.name}: a provider under {r.parent}"
            continue
        top = r
        while top.parent in by_urn:
            top = by_urn[top.parent]
        assert top is mesh, f"{r.type} {r.name} is not under the WireGuardMesh component"


def test_keys_are_random_bytes_kept_by_epochs(stack_run: Run) -> None:
    run, plan = stack_run
    mesh = plan.spec.mesh
    members = [(n.name, n.key_epoch) for n in plan.spec.nodes] + [
        (c.name, c.key_epoch) for c in plan.spec.clients
    ]
    for name, epoch in members:
        key = run.one("random:index/randomBytes:RandomBytes", f"{name}-key")
        keepers = {"meshKeyEpoch": str(mesh.key_epoch), "keyEpoch": str(epoch)}
        assert key.inputs == {"length": 32, "keepers": keepers}
    roots = [r for r in run.of_type("random:index/randomBytes:RandomBytes") if r.name == f"{MESH}-psk-root"]
    if mesh.preshared_keys:
        assert [r.inputs for r in roots] == [{"length": 32, "keepers": {"meshKeyEpoch": str(mesh.key_epoch)}}]
    else:
        assert roots == []


def test_static_ips_are_their_own_resources_and_reach_the_vms(stack_run: Run) -> None:
    run, plan = stack_run
    for node in plan.spec.nodes:
        if node.cloud in ("lab", "external"):  # ext: an external host has no static IP resource
            continue
        typ, pattern, _ = STATIC_IP[node.cloud]
        ip = run.one(typ, pattern.format(node.name))
        vm = run.one(VM_TYPE[node.cloud], node.name)
        if node.cloud == "aws":
            assert ip.inputs["domain"] == "vpc"
            assoc = run.one("aws:ec2/eipAssociation:EipAssociation", f"{node.name}-eip-assoc")
            assert assoc.inputs == {"allocationId": ip.outputs["allocationId"], "instanceId": vm.id}
        elif node.cloud == "gcp":
            assert ip.inputs["addressType"] == "EXTERNAL"
            assert ip.inputs["region"] == node.region
            (nic,) = vm.inputs["networkInterfaces"]
            assert [c["natIp"] for c in nic["accessConfigs"]] == [ip.outputs["address"]]
        else:
            assert ip.inputs["autoDelete"] is False
            assert (ip.inputs["assigneeType"], ip.inputs["type"], ip.inputs["location"]) == (
                "server",
                "ipv4",
                node.region,
            )
            (net,) = vm.inputs["publicNets"]
            v6: dict[str, object] = {"ipv6Enabled": False}
            if plan.spec.mesh.public_ipv6:  # a static IPv6 primary IP too (test_patterns checks it)
                v6 = {"ipv6Enabled": True, "ipv6": int(run.one(typ, f"{node.name}-ip6").id)}
            assert net == {"ipv4": int(ip.id), "ipv4Enabled": True, **v6}


def test_firewalls_open_exactly_what_the_plan_needs(stack_run: Run) -> None:
    assert_firewalls_open_exactly_what_the_plan_needs(*stack_run)


def test_firewall_footprint_is_what_the_program_registers(stack_run: Run) -> None:
    """What the quota planner reads (firewall_footprint) is what the program created."""
    run, plan = stack_run
    assert firewall_footprint(plan) == captured_footprint(run)


def test_world_open_wireguard_carries_the_roaming_marker(stack_run: Run) -> None:
    run, plan = stack_run
    for r in run.resources:
        if not r.custom:
            continue
        found = wireguard_world_only_for_roaming(r.type, r.inputs, port=plan.spec.mesh.port)
        assert found == [], f"{r.type} {r.name}: {found}"


def nodes_and_vms(run: ProgramRun, plan: MeshPlan, cloud: str) -> list[NodeSpec]:
    """The plan's nodes of `cloud`, after checking the run registered exactly their VMs (none for none)."""
    nodes = [n for n in plan.spec.nodes if n.cloud == cloud]
    vms = run.of_type(VM_TYPE[cloud], allow_empty=not nodes)
    assert sorted(v.name for v in vms) == sorted(n.name for n in nodes)
    return nodes


def test_aws_instances_are_hardened_and_wired(stack_run: Run) -> None:
    run, plan = stack_run
    for node in nodes_and_vms(run, plan, "aws"):
        vm = run.one(VM_TYPE["aws"], node.name)
        inputs = vm.inputs
        assert inputs["metadataOptions"]["httpTokens"] == "required"
        assert inputs["rootBlockDevice"]["encrypted"] is True
        assert inputs["sourceDestCheck"] is (not node.routes)
        assert inputs["instanceType"] == node.size
        assert inputs["subnetId"] == run.one("aws:ec2/subnet:Subnet", f"aws-{node.region}-subnet").id
        assert inputs["vpcSecurityGroupIds"]  # which groups: test_program_firewalls.py
        assert "userData" not in inputs and is_secret(inputs["userDataBase64"])
        assert set(vm.ignore_changes) >= {"userDataBase64", "ami"} and vm.delete_before_replace
        query = ami_query(node.image, aws_arch(node.size))
        (lookup,) = [
            i
            for i in run.invokes
            if i.token == "aws:ec2/getAmi:getAmi"
            and i.args["filters"][0]["values"] == [query.name_pattern]
            and f"::aws-{node.region}::" in i.provider
        ]
        assert lookup.args["owners"] == [query.owner]
        assert inputs["ami"].startswith("ami-")


def test_gcp_instances_are_hardened_and_wired(stack_run: Run) -> None:
    run, plan = stack_run
    for node in nodes_and_vms(run, plan, "gcp"):
        vm = run.one(VM_TYPE["gcp"], node.name)
        inputs = vm.inputs
        assert inputs["canIpForward"] is node.routes
        assert inputs["allowStoppingForUpdate"] is True
        assert inputs["shieldedInstanceConfig"] == {
            "enableSecureBoot": True,
            "enableVtpm": True,
            "enableIntegrityMonitoring": True,
        }
        assert (inputs["machineType"], inputs["zone"]) == (node.size, node.zone)
        assert GCP_NODE_TAG in inputs["tags"]  # the other tags: test_program_firewalls.py
        (nic,) = inputs["networkInterfaces"]
        assert (
            nic["subnetwork"] == run.one("gcp:compute/subnetwork:Subnetwork", f"{MESH}-gcp-{node.region}").id
        )
        family = gcp_family(node.image, gcp_arch(node.size))
        assert inputs["bootDisk"]["initializeParams"]["image"].split("/")[-1].startswith(family)
        assert set(vm.ignore_changes) >= {'metadata["user-data"]', "bootDisk.initializeParams.image"}
        assert vm.delete_before_replace


def test_hcloud_servers_are_wired(stack_run: Run) -> None:
    run, plan = stack_run
    nodes = nodes_and_vms(run, plan, "hcloud")
    keys = [k.id for k in run.of_type("hcloud:index/sshKey:SshKey", allow_empty=not nodes)]
    assert bool(keys) == bool(nodes)  # the admin key goes to Hetzner only with Hetzner nodes
    for node in nodes:
        vm = run.one(VM_TYPE["hcloud"], node.name)
        inputs = vm.inputs
        assert (inputs["serverType"], inputs["image"], inputs["location"]) == (
            node.size,
            node.image,
            node.region,
        )
        assert inputs["firewallIds"]  # which firewalls: test_program_firewalls.py
        assert sorted(inputs.get("sshKeys", [])) == sorted(keys)
        assert set(vm.ignore_changes) >= {"userData", "image", "sshKeys"} and vm.delete_before_replace


def test_image_lookups_happen_once_per_region_and_image(stack_run: Run) -> None:
    run, plan = stack_run
    aws_wanted = {(n.region, n.image, aws_arch(n.size)) for n in plan.spec.nodes if n.cloud == "aws"}
    gcp_wanted = {(n.image, gcp_arch(n.size)) for n in plan.spec.nodes if n.cloud == "gcp"}
    aws_regions = {n.region for n in plan.spec.nodes if n.cloud == "aws"}
    looked_up = {
        "aws:ec2/getAmi:getAmi",
        "gcp:compute/getImage:getImage",
        "aws:servicequotas/getServiceQuota:getServiceQuota",
    }
    tokens = Counter(i.token for i in run.invokes if i.token in looked_up)
    assert (
        tokens
        == Counter(
            {
                "aws:ec2/getAmi:getAmi": len(aws_wanted),
                "gcp:compute/getImage:getImage": len(gcp_wanted),
                # one quota read per AWS region and quota (components/quota_aws.py)
                "aws:servicequotas/getServiceQuota:getServiceQuota": len(aws_regions) * len(AWS_QUOTAS),
            }
        )
        - Counter()
    )
    for i in run.invokes:
        if i.token == "gcp:compute/getImage:getImage":
            assert i.args["project"] == GCP_UBUNTU_PROJECT


def test_user_data_is_exactly_what_the_renderer_makes(stack_run: Run) -> None:
    run, plan = stack_run
    keys = key_material(run, plan)
    eps, eps6 = endpoints(run, plan), endpoints6(run, plan)
    for node in plan.nodes:
        handed = handed_user_data(run, node.name, node.cloud)
        assert is_secret(handed), f"{node.name}: user data is not secret"
        text = reveal(handed)
        if node.cloud == "aws":
            text = decode_aws_user_data(text)
        assert text == node_user_data(plan, node.name, keys.node_keys(node.name), eps, eps6), node.name


def assert_secret_outputs(exported: dict[str, object], expected: dict[str, str]) -> None:
    """A stack output map holds exactly these members, each a secret with exactly this text."""
    assert set(exported) == set(expected)
    for name, text in expected.items():
        leaf = exported[name]
        assert isinstance(leaf, Resolved) and leaf.secret, name
        assert leaf.value == text, name


def test_client_configs_are_secret_and_rendered_with_the_same_keys(stack_run: Run) -> None:
    run, plan = stack_run
    keys = key_material(run, plan)
    eps = endpoints(run, plan)  # clients dial IPv4 whatever wgmesh:mesh.endpoints says
    expected = {c.name: client_config(plan, c.name, keys.node_keys(c.name), eps) for c in plan.clients}
    assert_secret_outputs(run.outputs["clients"], expected)


def test_node_wg_configs_are_secret_and_match_the_user_data(stack_run: Run) -> None:
    """`wgConfigs` is the manual day-2 path: it must be exactly what each node booted with."""
    run, plan = stack_run
    keys = key_material(run, plan)
    eps, eps6 = endpoints(run, plan), endpoints6(run, plan)
    expected = {n.name: node_wg_conf(plan, n.name, keys.node_keys(n.name), eps, eps6) for n in plan.nodes}
    assert_secret_outputs(run.outputs["wgConfigs"], expected)
    for node in plan.nodes:
        user_data = node_user_data(plan, node.name, keys.node_keys(node.name), eps, eps6)
        indented = "\n".join("    " + line if line else "" for line in expected[node.name].splitlines())
        assert indented in user_data, node.name


def test_lab_user_data_is_exported_secret_for_lab_nodes_only(stack_run: Run) -> None:
    run, plan = stack_run
    keys = key_material(run, plan)
    eps, eps6 = endpoints(run, plan), endpoints6(run, plan)
    expected = {
        n.name: node_user_data(plan, n.name, keys.node_keys(n.name), eps, eps6)
        for n in plan.nodes
        if n.cloud == "lab"
    }
    assert_secret_outputs(run.outputs["labUserData"], expected)


def test_node_exports_are_public_facts_only(stack_run: Run) -> None:
    run, plan = stack_run
    keys = key_material(run, plan)
    eps = endpoints(run, plan)
    nodes = run.outputs["nodes"]
    assert set(nodes) == {n.name for n in plan.nodes}
    for node in plan.nodes:
        exported = nodes[node.name]
        assert all(isinstance(v, Resolved) and not v.secret for v in exported.values()), node.name
        a6 = node.iface.address6
        v6 = {}
        if plan.spec.mesh.public_ipv6:  # the static IPv6 (a lab node's publicIp6, else None)
            lab6 = plan.spec.node(node.name).public_ip6
            v6 = {"publicIp6": str(lab6) if lab6 else public_ip6(run, node.name, node.cloud)}
        assert {k: v.value for k, v in exported.items()} == {
            "cloud": node.cloud,
            "publicIp": eps[node.name] or None,  # ext: None for a host behind NAT
            "address": str(node.iface.address.ip),
            "address6": str(a6.ip) if a6 is not None else None,
            "publicKey": keys.public[node.name],
            **v6,
        }


def test_no_private_key_or_psk_outside_a_secret(stack_run: Run) -> None:
    """Walk every input, component output and stack output; decode base64/gzip on the way."""
    run, plan = stack_run
    keys = key_material(run, plan)
    secrets = keys.secrets(plan)
    seeds = {reveal(r.outputs["base64"]) for r in run.of_type("random:index/randomBytes:RandomBytes")}
    secrets |= seeds
    assert secrets, "nothing to look for"
    places: list[tuple[str, object]] = [(f"{r.type} {r.name} input", r.inputs) for r in run.resources]
    places += [(f"{urn} registered output", outs) for urn, outs in run.component_outputs.items()]
    seen_in_secret: set[str] = set()
    for where, value in places:
        for path, text, secret in strings(value):
            hits = {s for form in decoded_forms(text) for s in secrets if s in form}
            if secret:
                seen_in_secret |= hits
            else:
                assert not hits, f"{where} {path}: a private key or PSK in a non-secret value"
    for where, leaf in _leaves(run.outputs):
        hits = {s for form in decoded_forms(str(leaf.value)) for s in secrets if s in form}
        if leaf.secret:
            seen_in_secret |= hits
        else:
            assert not hits, f"stack output {where}: a private key or PSK in a non-secret value"
    # The audit must actually have looked at the key material: every member's key is in some secret.
    assert set(keys.private.values()) <= seen_in_secret
    assert keys.psks(plan) <= seen_in_secret


def _leaves(value: object, path: str = "") -> list[tuple[str, Resolved]]:
    if isinstance(value, Resolved):
        return [(path, value)]
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [leaf for i, v in enumerate(value) for leaf in _leaves(v, f"{path}[{i}]")]
    return []


def test_example_stacks_pass_the_policy_pack(stack_run: Run) -> None:
    run, plan = stack_run
    found = []
    for r in run.resources:
        if not r.custom:
            continue
        for name, rule in MANDATORY_RULES.items():
            if rule is wireguard_world_only_for_roaming:
                messages = wireguard_world_only_for_roaming(r.type, r.inputs, port=plan.spec.mesh.port)
            else:
                messages = rule(r.type, r.inputs)
            found += [f"{r.type} {r.name}: {name}: {m}" for m in messages]
    assert found == []


def test_routed_subnet_sites_send_the_mesh_back_through_their_node(stack_run: Run) -> None:
    run, plan = stack_run
    mesh_cidr = str(plan.spec.mesh.cidr)
    regions = {n.region for n in plan.spec.nodes if n.cloud == "aws"}
    routes = run.of_type("aws:ec2/route:Route", allow_empty=not regions)
    assert bool(routes) == bool(regions)  # every AWS region routes its default route at least
    for region in regions:
        nodes = [n for n in plan.spec.nodes if n.cloud == "aws" and n.region == region]
        vpc = run.one("aws:ec2/vpc:Vpc", f"aws-{region}-vpc").inputs["cidrBlock"]
        table = run.one("aws:ec2/routeTable:RouteTable", f"aws-{region}-rt").id
        mine = [r.inputs for r in routes if r.inputs["routeTableId"] == table]
        igw = run.one("aws:ec2/internetGateway:InternetGateway", f"aws-{region}-igw").id
        assert {"destinationCidrBlock": "0.0.0.0/0", "gatewayId": igw, "routeTableId": table} in mine
        hosts = [n for n in nodes if n.subnets and str(n.subnets[0]) == vpc]
        if hosts:
            (router,) = hosts
            eni = run.one(VM_TYPE["aws"], router.name).outputs["primaryNetworkInterfaceId"]
            assert {
                "destinationCidrBlock": mesh_cidr,
                "networkInterfaceId": eni,
                "routeTableId": table,
            } in mine
        else:
            assert ipaddress.IPv4Network(vpc).subnet_of(ipaddress.IPv4Network("10.200.0.0/16"))
            # The default route, and ::/0 to the internet gateway when dual stack (test_patterns).
            assert len(mine) == (1 if plan.spec.mesh.cidr6 is None else 2)
        overlay = plan.spec.mesh.cidr
        assert not ipaddress.ip_network(vpc).overlaps(overlay)


def test_snapshot_matches(stack_run: Run) -> None:
    """The committed plan text; a change here is what a reviewer sees in the pull request."""
    run, _ = stack_run
    text = render(run)
    path = path_for(run.stack)
    if os.environ.get(UPDATE_ENV) == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no snapshot for stack {run.stack}: run with {UPDATE_ENV}=1 and commit it"
    committed = path.read_text()
    if text != committed:
        diff = difflib.unified_diff(
            committed.splitlines(),
            text.splitlines(),
            f"{path.name} (committed)",
            f"{path.name} (program)",
            lineterm="",
        )
        shown = "\n".join(list(diff)[:80])
        raise AssertionError(
            f"the program's plan for stack '{run.stack}' changed; if intended, regenerate with "
            f"{UPDATE_ENV}=1 .venv/bin/pytest tests/program and commit the snapshot:\n{shown}"
        )
