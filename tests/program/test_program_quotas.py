"""The quota budget under mocks: logged at preview, read from AWS Service Quotas, refused when over.

The mocks answer each Service Quotas read with the documented default (a new account), or,
with `deny_service_quotas`, the way AWS refuses credentials without servicequotas:GetServiceQuota.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pulumi
import pytest
from wgmesh_mocks import REPO, ProgramRun, WgmeshMocks, run_program, stack_config

from components.quota_catalog import AWS_QUOTAS
from components.quota_plan import quota_needs
from mesh.plan import build_plan
from mesh.stackfile import load_spec

DEV = REPO / "stacks" / "Pulumi.dev.yaml"
SERVICE_QUOTA = "aws:servicequotas/getServiceQuota:getServiceQuota"


@pytest.fixture
def logged(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """What the program logs through pulumi.log (info lines as they are, warnings prefixed)."""
    lines: list[str] = []
    monkeypatch.setattr(pulumi.log, "info", lambda msg, *a, **k: lines.append(msg))
    monkeypatch.setattr(pulumi.log, "warn", lambda msg, *a, **k: lines.append(f"warning: {msg}"))
    yield lines


def dev_with(**extra: object) -> dict[str, str]:
    config = stack_config(DEV)
    config.update({k: json.dumps(v) for k, v in extra.items()})
    return config


def non_providers(run: ProgramRun) -> list[str]:
    return [f"{r.type} {r.name}" for r in run.resources if not r.type.startswith("pulumi:providers:")]


def six_aws_nodes_in_one_region() -> dict[str, str]:
    config = stack_config(DEV)
    nodes = json.loads(config["wgmesh:nodes"])
    aws = next(n for n in nodes if n["cloud"] == "aws")
    extra = {k: v for k, v in aws.items() if k != "subnets"}
    nodes += [{**extra, "name": f"aws-fra{i}", "address": f"10.77.0.{40 + i}"} for i in range(5)]
    config["wgmesh:nodes"] = json.dumps(nodes)
    # Plenty of vCPUs: the Elastic IPs are the one quota this stack exceeds.
    config["wgmesh:quotas"] = json.dumps({"aws": {"eu-central-1": {"standardVcpus": 64}}})
    return config


def test_the_budget_is_logged_one_line_per_quota(logged: list[str]) -> None:
    run = run_program("dev", stack_config(DEV))
    assert run.error is None, run.error
    budget = [line for line in logged if line.startswith("quota ")]
    assert len(budget) == len(quota_needs(build_plan(load_spec(DEV))))
    assert (
        "quota aws eu-central-1 Elastic IP addresses per Region: 1 needed / 5 in force "
        "(read from AWS Service Quotas) ok" in budget
    )
    assert "quota gcp project FIREWALLS: 5 needed / 100 in force (documented default) ok" in budget
    assert "quota hcloud account Servers: 1 needed / 10 in force (documented default) ok" in budget


def test_aws_quotas_are_read_once_per_region_and_quota_with_the_regions_provider() -> None:
    run = run_program("dev", stack_config(DEV))
    reads = [i for i in run.invokes if i.token == SERVICE_QUOTA]
    assert sorted((i.args["serviceCode"], i.args["quotaCode"]) for i in reads) == sorted(
        q.aws_code for q in AWS_QUOTAS if q.aws_code
    )
    provider = run.one("pulumi:providers:aws", "aws-eu-central-1")
    assert provider.inputs["region"] == "eu-central-1"
    assert {i.provider.rsplit("::", 1)[0] for i in reads} == {provider.urn}


def test_a_declared_quota_is_not_read_and_says_where_it_came_from(logged: list[str]) -> None:
    run = run_program("dev", dev_with(**{"wgmesh:quotas": {"aws": {"eu-central-1": {"elasticIps": 20}}}}))
    assert run.error is None, run.error
    codes = {i.args["quotaCode"] for i in run.invokes if i.token == SERVICE_QUOTA}
    assert "L-0263D0A3" not in codes and len(codes) == len(AWS_QUOTAS) - 1
    assert (
        "quota aws eu-central-1 Elastic IP addresses per Region: 1 needed / 20 in force "
        "(declared in wgmesh:quotas.aws.eu-central-1.elasticIps) ok" in logged
    )


def test_a_refused_read_falls_back_to_the_default_with_a_note(
    logged: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(WgmeshMocks, "deny_service_quotas", True)
    run = run_program("dev", stack_config(DEV))
    assert run.error is None, run.error
    notes = [line for line in logged if line.startswith("warning: ")]
    assert len(notes) == len(AWS_QUOTAS)
    assert all("servicequotas:GetServiceQuota" in n and "documented default" in n for n in notes)
    eips = "quota aws eu-central-1 Elastic IP addresses per Region"
    assert f"{eips}: 1 needed / 5 in force (documented default) ok" in logged


def test_a_stack_over_a_quota_fails_at_preview_with_one_line_and_creates_nothing(logged: list[str]) -> None:
    run = run_program("dev", six_aws_nodes_in_one_region())
    assert isinstance(run.error, pulumi.RunError), repr(run.error)
    message = str(run.error)
    assert "\n" not in message
    assert message.startswith(
        "wgmesh:quotas.aws.eu-central-1.elasticIps: aws quota 'Elastic IP addresses per Region' in "
        "eu-central-1: this stack needs 6, 5 in force (read from AWS Service Quotas); raise it ("
    )
    assert "--quota-code L-0263D0A3 --desired-value 6" in message
    assert message.endswith("then declare it as wgmesh:quotas.aws.eu-central-1.elasticIps: 6")
    assert non_providers(run) == []
    # The budget is still printed, the over line marked.
    assert any(line.endswith(" OVER") and "Elastic IP" in line for line in logged)


def test_declaring_the_raised_quota_lets_the_same_stack_deploy() -> None:
    config = six_aws_nodes_in_one_region()
    config["wgmesh:quotas"] = json.dumps({"aws": {"eu-central-1": {"standardVcpus": 64, "elasticIps": 6}}})
    run = run_program("dev", config)
    assert run.error is None, run.error
    assert len(run.of_type("aws:ec2/eip:Eip")) == 6


def test_bad_declared_quotas_fail_keyed_before_any_resource() -> None:
    run = run_program("dev", dev_with(**{"wgmesh:quotas": {"hcloud": {"firewall": 100}}}))
    assert isinstance(run.error, pulumi.RunError), repr(run.error)
    assert str(run.error) == "wgmesh:quotas.hcloud.firewall: unknown quota (did you mean 'firewalls'?)"
    assert run.resources == []


def test_the_stack_file_section_is_a_known_config_key(tmp_path: Path) -> None:
    # `wgmesh:quotas` in a stack file read offline (make render) is not an unknown key.
    from mesh.stackfile import load_config

    path = tmp_path / "Pulumi.q.yaml"
    path.write_text(DEV.read_text() + "  wgmesh:quotas:\n    hcloud: {firewalls: 100}\n")
    assert load_config(path)["quotas"] == {"hcloud": {"firewalls": 100}}
