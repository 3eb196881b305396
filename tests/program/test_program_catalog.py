"""Sizes and zones asked of the clouds at preview (components/catalog.py), under the recorded catalog.

A refusal is one keyed line naming what is offered, raised before any resource but the explicit
providers; a default is what the catalog offers, logged, and pinned with ignore_changes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import pytest
import synthetic_stacks as synthetic
from cloud_catalog import CloudCatalog
from program_expectations import VM_TYPE, only_providers, plan_of
from wgmesh_mocks import ProgramRun, run_program

from components.config import StackConfigError

SUBNET = "aws:ec2/subnet:Subnet"
MESH = {"cidr": "10.50.0.0/24", "sshPublicKeys": [synthetic.ADMIN]}
ALL_ZONES = frozenset(z for zones in CloudCatalog().aws_zone_map.values() for z in zones)


def run(nodes: Sequence[Mapping[str, object]], catalog: CloudCatalog | None = None) -> ProgramRun:
    return run_program("catalog", synthetic.config(MESH, [dict(n) for n in nodes]), catalog=catalog)


def refusal(result: ProgramRun) -> str:
    """The one-line message of a run refused at preview, after checking it created nothing."""
    assert isinstance(result.error, StackConfigError), repr(result.error)
    assert only_providers(result) == []
    message = str(result.error)
    assert "\n" not in message
    return message


AWS_FRA = {"name": "aws-fra", "cloud": "aws", "region": "eu-central-1"}
GCP_FRA = {"name": "gcp-fra", "cloud": "gcp", "region": "europe-west3"}


def test_a_hetzner_size_not_offered_in_the_location_is_refused_naming_what_is() -> None:
    result = run([AWS_FRA, {"name": "hz-ash", "cloud": "hcloud", "region": "ash", "size": "cx23"}])
    assert refusal(result) == (
        "wgmesh:nodes[1].size: cx23 is not offered in ash "
        "(available: cpx12, cpx22, ccx13, cpx32, ccx23, cpx42)"
    )
    # The AWS provider exists (the catalog asked EC2 through it); it is the only resource.
    assert [r.name for r in result.resources] == ["aws-eu-central-1"]


def test_a_retired_hetzner_size_is_refused_with_its_end_date() -> None:
    result = run([{"name": "hz-nbg", "cloud": "hcloud", "region": "nbg1", "size": "cx22"}])
    message = refusal(result)
    assert message.startswith("wgmesh:nodes[0].size: cx22 is deprecated in nbg1, gone since 2025-12-31 ")
    # What is orderable there, cheapest first (cost-optimized line, then by memory, cores, disk).
    assert "(available: cax11, cx23, cax21, cx33, " in message and "cx22" not in message.split("(")[1]
    assert result.resources == []


def test_an_unknown_hetzner_size_is_refused() -> None:
    result = run([{"name": "hz-nbg", "cloud": "hcloud", "region": "nbg1", "size": "cx99"}])
    message = refusal(result)
    assert message.startswith(
        "wgmesh:nodes[0].size: cx99 is not a Hetzner server type (available: cax11, cx23"
    )
    assert message.endswith(", ...)")  # the list stops at a dozen names


def test_a_gcp_zone_that_does_not_exist_is_refused_naming_the_up_zones() -> None:
    result = run([AWS_FRA, {"name": "gcp-us", "cloud": "gcp", "region": "us-east1", "zone": "us-east1-a"}])
    assert refusal(result) == (
        "wgmesh:nodes[1].zone: us-east1-a is not an UP zone of us-east1 "
        "(available: us-east1-b, us-east1-c, us-east1-d)"
    )
    assert {r.type for r in result.resources} == {"pulumi:providers:aws", "pulumi:providers:gcp"}


def test_a_gcp_machine_type_missing_from_the_chosen_zone_is_refused() -> None:
    node = {**GCP_FRA, "zone": "europe-west3-a", "size": "c4a-standard-1"}
    assert refusal(run([node])) == (
        "wgmesh:nodes[0].size: c4a-standard-1 is not offered in europe-west3-a (offered in: europe-west3-c)"
    )


def test_an_aws_type_offered_nowhere_in_the_region_is_refused() -> None:
    node = {**AWS_FRA, "size": "m4.large"}
    assert refusal(run([node])) == (
        "wgmesh:nodes[0].size: m4.large is not offered in any available zone of eu-central-1"
    )


def test_aws_types_of_one_region_with_no_common_zone_are_refused() -> None:
    catalog = CloudCatalog().copy()
    catalog.aws_families.update({"eu-central-1a": ("t3",), "eu-central-1b": ("m7g",), "eu-central-1c": ()})
    nodes = [AWS_FRA, {"name": "aws-fra2", "cloud": "aws", "region": "eu-central-1", "size": "m7g.large"}]
    assert refusal(run(nodes, catalog)) == (
        "wgmesh:nodes[0].size: the eu-central-1 nodes' types share no availability zone for its subnet "
        "(m7g.large: eu-central-1b; t3.micro: eu-central-1a)"
    )


def test_every_problem_is_reported_at_once() -> None:
    result = run(
        [
            {"name": "hz-sin", "cloud": "hcloud", "region": "sin", "size": "cax11"},
            {"name": "gcp-be", "cloud": "gcp", "region": "europe-west1", "zone": "europe-west1-a"},
        ]
    )
    assert isinstance(result.error, StackConfigError)
    assert [p.key for p in result.error.problems] == ["wgmesh:nodes[0].size", "wgmesh:nodes[1].zone"]
    assert only_providers(result) == []


def test_defaults_are_what_the_catalog_offers_and_are_pinned(caplog: pytest.LogCaptureFixture) -> None:
    nodes = [
        {"name": "hz-nbg", "cloud": "hcloud", "region": "nbg1"},
        {"name": "hz-ash", "cloud": "hcloud", "region": "ash"},
        {"name": "gcp-us", "cloud": "gcp", "region": "us-east1"},
        {"name": "gcp-be", "cloud": "gcp", "region": "europe-west1"},
        {"name": "aws-use", "cloud": "aws", "region": "us-east-1"},
    ]
    with caplog.at_level(logging.INFO):
        result = run(nodes)
    assert result.error is None, result.error
    hz = {n: result.one(VM_TYPE["hcloud"], n) for n in ("hz-nbg", "hz-ash")}
    # Cheapest current shared x86: the cost-optimized CX line in the EU, CPX where CX is not sold.
    assert {n: vm.inputs["serverType"] for n, vm in hz.items()} == {"hz-nbg": "cx23", "hz-ash": "cpx12"}
    assert all("serverType" in vm.ignore_changes for vm in hz.values())
    gcp = {n: result.one(VM_TYPE["gcp"], n) for n in ("gcp-us", "gcp-be")}
    assert {n: vm.inputs["zone"] for n, vm in gcp.items()} == {
        "gcp-us": "us-east1-b",
        "gcp-be": "europe-west1-b",
    }
    assert all("zone" in vm.ignore_changes for vm in gcp.values())
    subnet = result.one(SUBNET, "aws-us-east-1-subnet")
    assert subnet.inputs["availabilityZone"] == "us-east-1a"
    assert subnet.ignore_changes == ("availabilityZone",)
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("wgmesh placement: ")]
    assert (
        "wgmesh placement: wgmesh:nodes[0].size: cx23 (cheapest current shared x86 type in nbg1; pinned)"
        in logged
    )
    assert any("wgmesh:nodes[2].zone: us-east1-b" in line for line in logged)
    assert any("aws us-east-1: subnet in us-east-1a" in line for line in logged)


def test_configured_values_are_not_pinned() -> None:
    nodes = [
        {"name": "hz-nbg", "cloud": "hcloud", "region": "nbg1", "size": "cpx22"},
        {**GCP_FRA, "zone": "europe-west3-b"},
    ]
    result = run(nodes)
    assert result.error is None, result.error
    hz, vm = result.one(VM_TYPE["hcloud"], "hz-nbg"), result.one(VM_TYPE["gcp"], "gcp-fra")
    assert (hz.inputs["serverType"], vm.inputs["zone"]) == ("cpx22", "europe-west3-b")
    assert "serverType" not in hz.ignore_changes and "zone" not in vm.ignore_changes


def test_a_default_skips_what_is_out_of_stock_or_missing() -> None:
    catalog = CloudCatalog().copy()
    catalog.out_of_stock.add(("cx23", "nbg1"))  # Hetzner's `available: false` in that location
    catalog.aws_zone_map["us-east-1"] = ("us-east-1e", "us-east-1f")  # e sorts first, offers no t3
    nodes = [
        {"name": "hz-nbg", "cloud": "hcloud", "region": "nbg1"},
        {"name": "gcp-c4a", "cloud": "gcp", "region": "europe-west3", "size": "c4a-standard-1"},
        {"name": "aws-use", "cloud": "aws", "region": "us-east-1"},
    ]
    result = run(nodes, catalog)
    assert result.error is None, result.error
    assert result.one(VM_TYPE["hcloud"], "hz-nbg").inputs["serverType"] == "cx33"
    assert result.one(VM_TYPE["gcp"], "gcp-c4a").inputs["zone"] == "europe-west3-c"
    assert result.one(SUBNET, "aws-us-east-1-subnet").inputs["availabilityZone"] == "us-east-1f"


@pytest.mark.parametrize(
    ("size", "disk"),
    [
        ("c4a-standard-1", "hyperdisk-balanced"),
        ("n4-standard-2", "hyperdisk-balanced"),
        ("c4-standard-2", "hyperdisk-balanced"),
        ("e2-small", "pd-balanced"),
        ("n2-standard-2", "pd-balanced"),
    ],
)
def test_gcp_boot_disk_type_follows_the_machine_series(size: str, disk: str) -> None:
    result = run([{**GCP_FRA, "zone": "europe-west3-c", "size": size}])
    assert result.error is None, result.error
    assert result.one(VM_TYPE["gcp"], "gcp-fra").inputs["bootDisk"]["initializeParams"]["type"] == disk


def test_every_subnet_sits_in_a_zone_offering_every_type_of_its_region() -> None:
    catalog = CloudCatalog()
    config = synthetic.matrix()
    result = run_program("matrix", config, catalog=catalog)
    assert result.error is None, result.error
    plan = plan_of(config, catalog)
    regions = {n.region for n in plan.spec.nodes if n.cloud == "aws"}
    assert regions == {"eu-central-1", "us-east-1"}
    for region in regions:
        zone = result.one(SUBNET, f"aws-{region}-subnet").inputs["availabilityZone"]
        assert zone in ALL_ZONES
        types = {n.size for n in plan.spec.nodes if n.cloud == "aws" and n.region == region}
        offered = catalog.aws_offerings(region, sorted(types))
        assert all(zone in offered[t] for t in types), (region, zone, types)


def test_the_catalog_is_asked_through_the_explicit_providers_once_per_region() -> None:
    result = run_program("hub", synthetic.three_clouds(12))
    assert result.error is None, result.error
    calls = [(i.token.rsplit(":", 1)[-1], (i.provider or "::").split("::")[-2]) for i in result.invokes]
    aws_regions = {"eu-central-1", "us-east-1", "eu-west-1"}
    for region in aws_regions:
        assert calls.count(("getAvailabilityZones", f"aws-{region}")) == 1
        assert calls.count(("getInstanceTypeOfferings", f"aws-{region}")) == 1
    assert calls.count(("getZones", "wgmesh-gcp")) == 2  # europe-west3, us-central1
    assert sum(1 for c in calls if c[0] == "getServerTypes") == 1


def test_a_later_up_keeps_the_subnet_where_it_is_and_checks_new_types_against_it() -> None:
    catalog = CloudCatalog().copy()
    tags = {"Name": "aws-eu-central-1-subnet", "wgmesh-mesh": "wgmesh", "wgmesh-stack": "catalog"}
    catalog.aws_subnets["subnet-0abc"] = {**tags, "region": "eu-central-1", "az": "eu-central-1b"}
    result = run([AWS_FRA], catalog)
    assert result.error is None, result.error
    assert result.one(SUBNET, "aws-eu-central-1-subnet").inputs["availabilityZone"] == "eu-central-1b"
    catalog.aws_families["eu-central-1b"] = ("t3",)  # the new node's type is not offered there
    nodes = [AWS_FRA, {"name": "aws-fra2", "cloud": "aws", "region": "eu-central-1", "size": "m7i.large"}]
    assert refusal(run(nodes, catalog)) == (
        "wgmesh:nodes[1].size: m7i.large is not offered in eu-central-1b, where the eu-central-1 subnet is "
        "(offered in: eu-central-1a, eu-central-1c)"
    )
