"""The program through contract-checking mocks: every stack and the edge cases a real cloud would
see (longest names, odd stack names, many admin CIDRs and keys, 60 and 150 nodes) are accepted,
and an input that breaks a cloud's rule is refused the way that cloud's API refuses it."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import pytest
import synthetic_stacks as synthetic
from contract_mocks import TABLE, ContractChecker, ContractViolation, UnknownCloudResource, physical_name
from wgmesh_mocks import REPO, ProgramRun, run_program, stack_config

from components import firewall
from components.firewall import IngressRule
from mesh import contracts
from mesh.contracts import label_value

STACK_FILES = sorted((REPO / "stacks").glob("Pulumi.*.yaml"))
DEV = REPO / "stacks" / "Pulumi.dev.yaml"
CLOUD_TYPES = tuple(t for t in TABLE if not t.startswith("pulumi:providers:"))


def dev_with(**mesh: Any) -> dict[str, str]:
    config = stack_config(DEV)
    config["wgmesh:mesh"] = json.dumps({**json.loads(config["wgmesh:mesh"]), **mesh})
    return config


def cloud_resources(run: ProgramRun) -> list[Any]:
    return [r for r in run.resources if r.type in CLOUD_TYPES]


def refused(run: ProgramRun) -> str:
    """The cloud-like refusal a run ended with; fails the test when it ended otherwise."""
    assert isinstance(run.error, ContractViolation), repr(run.error)
    return str(run.error)


@pytest.mark.parametrize("stack_file", STACK_FILES, ids=lambda p: p.stem.removeprefix("Pulumi."))
def test_every_stack_passes_the_cloud_contracts(stack_file: Path) -> None:
    run = run_program(stack_file.stem.removeprefix("Pulumi."), stack_config(stack_file))
    assert run.error is None, run.error
    assert run.resources


def longest_names() -> dict[str, str]:
    """31-character names (the spec's longest) on every cloud, with everything that derives a
    longer cloud name from them: IPv6 addresses, roaming firewalls, GCP return routes."""

    def name(tag: str) -> str:
        return (tag + "-" + "x" * 31)[:30] + "z"

    return synthetic.config(
        {"cidr": "10.77.0.0/24", "cidr6": "fd77:77::/64", "sshPublicKeys": [synthetic.ADMIN]},
        [
            {"name": name("aws"), "cloud": "aws", "region": "eu-central-1", "subnets": ["10.1.0.0/24"]},
            {"name": name("gcpa"), "cloud": "gcp", "region": "europe-west3", "subnets": ["10.2.0.0/24"]},
            {"name": name("gcpb"), "cloud": "gcp", "region": "us-central1"},
            {"name": name("hz"), "cloud": "hcloud", "region": "hel1", "subnets": ["172.16.100.128/25"]},
        ],
        [{"name": name("laptop"), "address": "10.77.0.100"}],
    )


def test_the_longest_node_names_fit_every_derived_cloud_name() -> None:
    run = run_program("dev", longest_names())
    assert run.error is None, run.error
    gcp = [physical_name(r.name, r.inputs) for r in run.resources if r.type.startswith("gcp:compute/")]
    # The return route through the 31-character router to 172.16.100.128/25: 60 of GCP's 63.
    assert max(len(n) for n in gcp) == 60, sorted(gcp, key=len)[-1]
    assert any("-wg-roaming6-" in n for n in gcp) and any("-ip6-" in n for n in gcp)


@pytest.mark.parametrize("stack", ["dev.eu_1", "_edge.", "Team_A.prod-", "s" * 100, "a." * 50])
def test_unusual_valid_stack_names_become_valid_labels(stack: str) -> None:
    run = run_program(stack, stack_config(DEV))
    assert run.error is None, run.error
    expected = label_value(stack)
    labeled = [r for r in run.resources if r.type.startswith("hcloud:")]
    assert labeled and {r.inputs["labels"]["wgmesh-stack"] for r in labeled} == {expected}
    provider = next(r for r in run.resources if r.type == "pulumi:providers:aws")
    assert json.loads(provider.inputs["defaultTags"])["tags"]["wgmesh-stack"] == expected
    assert (expected == stack) == (contracts.HCLOUD_LABEL_VALUE.violation(stack) is None)


def test_without_the_encoding_hetzner_refuses_such_a_stack_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("components.providers.label_value", lambda text: text)
    message = refused(run_program("_edge.", stack_config(DEV)))
    assert "invalid input in field 'labels' (invalid_input): Hetzner label value '_edge.'" in message


def ed25519(i: int) -> str:
    blob = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + hashlib.sha256(f"key {i}".encode()).digest()
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} admin{i}@example"


def test_many_admin_cidrs_and_ssh_keys() -> None:
    cidrs = [f"198.51.{i}.0/24" for i in range(40)]
    run = run_program("dev", dev_with(adminCidrs=cidrs, sshPublicKeys=[ed25519(i) for i in range(40)]))
    assert run.error is None, run.error
    # One Hetzner key of the stack's own, however many admin keys (they travel in user data).
    assert len(run.of_type("hcloud:index/sshKey:SshKey")) == 1
    (ssh,) = [r for r in run.of_type("gcp:compute/firewall:Firewall") if r.name.endswith("-ssh")]
    assert ssh.inputs["sourceRanges"] == cidrs


@pytest.fixture(scope="session")
def full_meshes() -> dict[int, ProgramRun]:
    """Full meshes with PSKs over three clouds, each run once (about 8 s and 15 s)."""
    return {
        n: run_program("big", synthetic.three_clouds(n, quotas=synthetic.raised_quotas(n))) for n in (60, 150)
    }


@pytest.mark.parametrize("nodes", [60, 150])
def test_full_meshes_pass_the_cloud_contracts(full_meshes: dict[int, ProgramRun], nodes: int) -> None:
    run = full_meshes[nodes]
    assert run.error is None, str(run.error)
    for vm in ("aws:ec2/instance:Instance", "gcp:compute/instance:Instance", "hcloud:index/server:Server"):
        assert len(run.of_type(vm)) == nodes // 3
    assert len(cloud_resources(run)) > 2 * nodes  # VMs, static IPs, associations, shared firewalls


# --------------------------------------------------------------- each cloud refuses, like its API


def test_aws_refuses_an_apostrophe_in_a_rule_description(monkeypatch: pytest.MonkeyPatch) -> None:
    """The defect this layer exists for: EC2 takes no apostrophe in a security group rule description."""
    original = firewall.wireguard_rule

    def with_apostrophe(*args: Any) -> IngressRule:
        rule = original(*args)
        return dataclasses.replace(rule, description=rule.description + " (peers' IPs)")

    monkeypatch.setattr("components.firewall.wireguard_rule", with_apostrophe)
    run = run_program("dev", stack_config(DEV))
    message = refused(run)
    assert "InvalidParameterValue: AWS security group rule description" in message
    assert not [g for g in run.of_type("aws:ec2/securityGroup:SecurityGroup") if "-wg-" in g.name]


@pytest.mark.parametrize(
    ("node", "cloud", "region", "fragments"),
    [
        (
            "edge-",
            "hcloud",
            "nbg1",
            ("invalid input in field 'labels' (invalid_input): Hetzner label value 'edge-'",),
        ),
    ],
)
def test_each_cloud_refuses_a_name_the_spec_would_have_stopped(
    monkeypatch: pytest.MonkeyPatch, node: str, cloud: str, region: str, fragments: tuple[str, ...]
) -> None:
    """With the spec's check switched off, the cloud (mock) refuses the derived name instead."""
    monkeypatch.setattr("mesh.spec.node_name_problems", lambda name, cloud: [])
    config = synthetic.config({"cidr": "10.77.0.0/24"}, [{"name": node, "cloud": cloud, "region": region}])
    message = refused(run_program("dev", config))
    assert all(f in message for f in fragments), message


@pytest.mark.parametrize(
    ("node", "cloud", "region"), [("edge-", "hcloud", "nbg1"), ("db-", "hcloud", "fsn1")]
)
def test_the_spec_refuses_those_names_before_any_resource(node: str, cloud: str, region: str) -> None:
    config = synthetic.config({"cidr": "10.77.0.0/24"}, [{"name": node, "cloud": cloud, "region": region}])
    run = run_program("dev", config)
    assert isinstance(run.error, pulumi.RunError) and not isinstance(run.error, ContractViolation)
    assert str(run.error).startswith(f"wgmesh:nodes[0].name: {node!r} cannot be used on {cloud}: ")
    assert run.resources == []


def test_gcp_refuses_a_long_description(monkeypatch: pytest.MonkeyPatch) -> None:
    original = firewall.ssh_rule

    def long(*args: Any) -> IngressRule:
        return dataclasses.replace(original(*args), description="d" * 2049)

    monkeypatch.setattr("components.firewall.ssh_rule", long)
    gcp_only = synthetic.config(
        {"cidr": "10.77.0.0/24", "adminCidrs": ["198.51.100.0/24"]},
        [{"name": "g", "cloud": "gcp", "region": "europe-west3"}],
    )
    assert "'resource.description': GCP description" in refused(run_program("dev", gcp_only))


def test_hetzner_refuses_a_rule_with_more_than_100_cidrs(monkeypatch: pytest.MonkeyPatch) -> None:
    """101 admin CIDRs in one rule, once the layout stops splitting rules at Hetzner's 100."""
    monkeypatch.setattr("components.firewall.HCLOUD_SOURCES_PER_RULE", 10_000)
    hcloud_only = synthetic.config(
        {"cidr": "10.77.0.0/24", "adminCidrs": [f"198.51.{i}.0/24" for i in range(101)]},
        [{"name": "h", "cloud": "hcloud", "region": "fsn1"}],
    )
    message = refused(run_program("dev", hcloud_only))
    assert (
        "field 'rules[].sourceIps' (invalid_input): 101 CIDR blocks in one Hetzner firewall rule" in message
    )


# ------------------------------------------------------------------------- the checker itself


def test_a_cloud_resource_type_missing_from_the_table_is_refused_loudly() -> None:
    check = ContractChecker().check
    for typ in ("aws:ec2/keyPair:KeyPair", "pulumi:providers:hcloud", "azure:compute:VirtualMachine"):
        with pytest.raises(UnknownCloudResource):
            check(typ, "x", {}, None)
    check("random:index/randomBytes:RandomBytes", "x", {"length": 32}, None)  # local: no cloud contract
    check("command:remote:Command", "x", {}, None)


def test_aws_counts_the_providers_default_tags_with_the_resources_own() -> None:
    check = ContractChecker().check
    defaults = json.dumps({"tags": {f"d{i}": "v" for i in range(49)}})
    check("pulumi:providers:aws", "aws-eu", {"defaultTags": defaults}, None)
    provider = "urn:pulumi:dev::wgmesh::pulumi:providers:aws::aws-eu::id"
    check("aws:ec2/vpc:Vpc", "one-more", {"tags": {"Name": "x"}}, provider)  # 50: accepted
    with pytest.raises(ContractViolation, match="51 tags on one AWS resource, over the limit of 50"):
        check("aws:ec2/vpc:Vpc", "two-more", {"tags": {"Name": "x", "role": "y"}}, provider)


def test_hetzner_refuses_a_second_ssh_key_with_the_same_fingerprint() -> None:
    check = ContractChecker().check
    check("hcloud:index/sshKey:SshKey", "admin-0", {"publicKey": ed25519(1)}, None)
    check("hcloud:index/sshKey:SshKey", "admin-1", {"publicKey": ed25519(2)}, None)
    with pytest.raises(ContractViolation, match=r"same fingerprint already exists \(admin-0\)"):
        check(
            "hcloud:index/sshKey:SshKey",
            "admin-2",
            {"publicKey": ed25519(1).replace("admin1", "other")},
            None,
        )


def test_an_unset_name_is_checked_as_pulumi_would_auto_name_it() -> None:
    check = ContractChecker().check
    assert physical_name("fw", {}).startswith("fw-") and len(physical_name("fw", {})) == 10
    with pytest.raises(ContractViolation, match=r"GCP resource name 'n{60}-[0-9a-f]{7}' is 68 characters"):
        check("gcp:compute/firewall:Firewall", "n" * 60, {}, None)
    check("gcp:compute/firewall:Firewall", "n" * 60, {"name": "short"}, None)  # a set name is used as is


def aws_user_data(size: int) -> dict[str, Any]:
    return {"userDataBase64": base64.b64encode(b"x" * size).decode()}


@pytest.mark.parametrize(
    ("typ", "inputs", "limit"),
    [
        ("aws:ec2/instance:Instance", aws_user_data, 16384),
        ("gcp:compute/instance:Instance", lambda size: {"metadata": {"user-data": "x" * size}}, 262144),
        ("hcloud:index/server:Server", lambda size: {"userData": "x" * size}, 32768),
    ],
)
def test_user_data_over_the_clouds_limit_is_refused(
    typ: str, inputs: Callable[[int], dict[str, Any]], limit: int
) -> None:
    """The program refuses such user data itself first (cloudinit.render); the mock backs it up."""
    check = ContractChecker().check
    check(typ, "vm", inputs(limit), None)
    with pytest.raises(
        ContractViolation, match=f"user data is {limit + 1} bytes, over the {limit}-byte limit"
    ):
        check(typ, "vm", inputs(limit + 1), None)
