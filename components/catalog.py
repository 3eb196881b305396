"""Ask the clouds, at preview and before any resource, where each node can run.

`InvokeCatalog` answers mesh.placement's questions with the providers' blocking invokes (a
refusal must come before anything is registered, which the `_output` forms cannot promise):
Hetzner's server types with their per-location deprecation and stock, GCP's UP zones and the
machine types a zone offers, AWS's available zones, instance-type offerings per zone and the
AZ of the region's subnet when a former `up` made it (it stays there: every type must fit it).
Each answer is asked once per run (per cloud, region, zone or type), not per node.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
from collections.abc import Iterable, Sequence

import pulumi
import pulumi_aws as aws
import pulumi_gcp as gcp
import pulumi_hcloud as hcloud

from components.config import StackConfigError
from components.netplan import subnetwork_description
from components.providers import Providers, mesh_labels
from mesh.errors import ConfigError
from mesh.placement import LocationOffer, Placements, ServerType, resolve
from mesh.plan_types import MeshPlan


class InvokeCatalog:
    """mesh.placement.Catalog over the providers' invokes, memoised for one run."""

    def __init__(self, providers: Providers) -> None:
        self.providers = providers
        self._hcloud: list[ServerType] | None = None
        self._gcp_zones: dict[str, list[str]] = {}
        self._gcp_offers: dict[tuple[str, str], bool] = {}

    def hcloud_server_types(self) -> Sequence[ServerType]:
        if self._hcloud is None:
            result = hcloud.get_server_types()
            self._hcloud = [_server_type(t) for t in result.server_types]
        return self._hcloud

    def gcp_zones(self, region: str) -> Sequence[str]:
        if region not in self._gcp_zones:
            result = gcp.compute.get_zones(region=region, status="UP", opts=self._gcp_opts())
            self._gcp_zones[region] = list(result.names or [])
        return self._gcp_zones[region]

    def gcp_offers(self, zone: str, machine_type: str) -> bool:
        key = (zone, machine_type)
        if key not in self._gcp_offers:
            # List filter syntax of the Compute API (machineTypes.list `filter`): field = value.
            result = gcp.compute.get_machine_types(
                zone=zone, filter=f"name = {machine_type}", opts=self._gcp_opts()
            )
            self._gcp_offers[key] = any(m.name == machine_type for m in result.machine_types or [])
        return self._gcp_offers[key]

    def aws_zones(self, region: str) -> Sequence[str]:
        result = aws.get_availability_zones(state="available", opts=self._aws_opts(region))
        return list(result.names or [])

    def aws_offerings(self, region: str, instance_types: Sequence[str]) -> dict[str, set[str]]:
        result = aws.ec2.get_instance_type_offerings(
            location_type="availability-zone",
            filters=[{"name": "instance-type", "values": list(instance_types)}],
            opts=self._aws_opts(region),
        )
        offered: dict[str, set[str]] = {t: set() for t in instance_types}
        for itype, zone in zip(result.instance_types or [], result.locations or [], strict=True):
            offered.setdefault(itype, set()).add(zone)
        return offered

    def aws_subnet_zone(self, region: str) -> str | None:
        # The subnet components/aws.py makes for the region, found by the tags it carries (its
        # Name, and the provider's default tags naming this mesh and stack).
        tags = {"Name": f"aws-{region}-subnet", **mesh_labels(self.providers.mesh)}
        found = aws.ec2.get_subnets(tags=tags, opts=self._aws_opts(region))
        if not found.ids:
            return None
        return aws.ec2.get_subnet(id=sorted(found.ids)[0], opts=self._aws_opts(region)).availability_zone

    def _gcp_opts(self) -> pulumi.InvokeOptions:
        return pulumi.InvokeOptions(provider=self.providers.gcp())

    def _aws_opts(self, region: str) -> pulumi.InvokeOptions:
        return pulumi.InvokeOptions(provider=self.providers.aws(region))


def existing_site_networks(
    providers: Providers, site_keys: Iterable[str]
) -> dict[str, ipaddress.IPv4Network]:
    """The network each site already runs on (a former `up` made it), read from the clouds at
    preview with blocking invokes, before any resource but the providers; absent: none yet.

    AWS: the region's VPC, found as components/aws.py tags it (its Name, and the provider's
    default tags naming this mesh and stack). GCP: the region's subnetwork, found by the
    description components/gcp.py gives it (components.netplan.subnetwork_description).
    """
    labels = mesh_labels(providers.mesh)
    found: dict[str, ipaddress.IPv4Network] = {}
    for key in site_keys:
        cloud, region = key.split("-", 1)
        cidr = (
            _aws_vpc_cidr(providers, region, labels)
            if cloud == "aws"
            else _gcp_subnetwork_cidr(providers, region, subnetwork_description(labels, key))
        )
        if cidr:
            found[key] = ipaddress.IPv4Network(cidr)
    return found


def _aws_vpc_cidr(providers: Providers, region: str, labels: dict[str, str]) -> str | None:
    # aws.ec2.get_vpcs returns no ids, not an error, when nothing matches (terraform-provider-aws
    # internal/service/ec2/vpc_vpcs_data_source.go sets `ids` from DescribeVpcs as found);
    # get_vpc's `cidr_block` is the VPC's primary IPv4 block, which the subnet shares.
    opts = pulumi.InvokeOptions(provider=providers.aws(region))
    vpcs = aws.ec2.get_vpcs(tags={"Name": f"aws-{region}-vpc", **labels}, opts=opts)
    if not vpcs.ids:
        return None
    return aws.ec2.get_vpc(id=sorted(vpcs.ids)[0], opts=opts).cidr_block


def _gcp_subnetwork_cidr(providers: Providers, region: str, description: str) -> str | None:
    # subnetworks.list `filter` (Compute API list filtering: `field = "value"` compares a
    # string field exactly); the result is checked here too, as a filter mistake must not match.
    result = gcp.compute.get_subnetworks(
        region=region,
        filter=f'description = "{description}"',
        opts=pulumi.InvokeOptions(provider=providers.gcp()),
    )
    matches = sorted(s.ip_cidr_range for s in result.subnetworks or [] if s.description == description)
    return matches[0] if matches else None


def _server_type(t: hcloud.outputs.GetServerTypesServerTypeResult) -> ServerType:
    return ServerType(
        name=t.name,
        cores=t.cores,
        memory=t.memory,
        disk=t.disk,
        architecture=t.architecture,
        cpu_type=t.cpu_type,
        category=t.category,
        locations=tuple(
            LocationOffer(o.name, o.available, o.is_deprecated, o.unavailable_after or "")
            for o in t.locations
        ),
    )


def place_nodes(plan: MeshPlan, providers: Providers) -> tuple[MeshPlan, Placements]:
    """The plan with every cloud node's size and zone resolved, or StackConfigError at preview.

    What was picked is logged (`pulumi preview` shows it) and returned for the components
    to pin with ignore_changes.
    """
    try:
        placements = resolve(plan.spec, InvokeCatalog(providers), datetime.datetime.now(datetime.UTC).date())
    except ConfigError as e:
        raise StackConfigError(e.problems) from None
    for note in placements.notes:
        pulumi.log.info(f"wgmesh placement: {note}")
    for warning in placements.warnings:
        pulumi.log.warn(f"wgmesh placement: {warning}")
    return dataclasses.replace(plan, spec=placements.apply(plan.spec)), placements
