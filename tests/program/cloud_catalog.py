"""What the clouds offer, as their documentation says, answering the catalog's invokes under mocks.

Recorded 2026-12-03 (UTC, `date` on the test machine). Each fact names its source; where the
fixture had to choose something the documentation does not pin down, it says so. Stock and
zone status change by the hour on the real clouds: that is why the program asks them at
preview (components/catalog.py) and only the tests read this file.

The same data answers the program's invokes (`CloudCatalog.answer`, wired into
WgmeshMocks.call) and the tests' expectations (`CloudCatalog` is a mesh.placement.Catalog).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mesh.placement import LocationOffer, ServerType

RECORDED = "2026-12-03"

# --- Hetzner Cloud ------------------------------------------------------------------------------
# Locations: fsn1, nbg1, hel1 (EU), ash (US East), hil (US West), sin (Singapore).
# Source: docs.hetzner.com/cloud/general/locations; mesh/spec.py HCLOUD_LOCATIONS.
HCLOUD_EU = ("fsn1", "nbg1", "hel1")
HCLOUD_ALL = (*HCLOUD_EU, "ash", "hil", "sin")
# Changelog 2025-10-16 "Server types deprecated" (docs.hetzner.cloud/changelog#2025-10-16-
# server-types-deprecated; hetznercloud/cli#1211, packer-plugin-hcloud#317, hcloud-talos#316):
# CX Gen2 (cx22..cx52) and CPX Gen1 (cpx11..cpx51) deprecated in every location, announced
# 2025-10-16T06:00:00Z, "no longer available for order as of 2025-12-31" (removed from the API at
# the end of 2025). CX (Intel) types were never offered in ash/hil (trailofbits/algo#14562:
# "CX-Servers with INTEL CPU are not offered in our US-Locations") nor sin.
DEPRECATION_ANNOUNCED = "2025-10-16T06:00:00Z"
UNAVAILABLE_AFTER = "2025-12-31T23:59:59Z"


@dataclass(frozen=True)
class HcloudType:
    name: str
    cores: int
    memory: float  # GB
    disk: int  # GB
    architecture: str
    cpu_type: str
    category: str
    locations: tuple[str, ...]
    deprecated: bool = False


HCLOUD_TYPES: tuple[HcloudType, ...] = (
    # Deprecated lines (see above); sizes per docs.hetzner.com/cloud/servers/deprecated-plans.
    HcloudType("cx22", 2, 4, 40, "x86", "shared", "cost_optimized", HCLOUD_EU, deprecated=True),
    HcloudType("cx32", 4, 8, 80, "x86", "shared", "cost_optimized", HCLOUD_EU, deprecated=True),
    HcloudType("cx42", 8, 16, 160, "x86", "shared", "cost_optimized", HCLOUD_EU, deprecated=True),
    HcloudType("cx52", 16, 32, 320, "x86", "shared", "cost_optimized", HCLOUD_EU, deprecated=True),
    HcloudType("cpx11", 2, 2, 40, "x86", "shared", "regular_purpose", HCLOUD_ALL, deprecated=True),
    HcloudType("cpx21", 3, 4, 80, "x86", "shared", "regular_purpose", HCLOUD_ALL, deprecated=True),
    HcloudType("cpx31", 4, 8, 160, "x86", "shared", "regular_purpose", HCLOUD_ALL, deprecated=True),
    # The 2025-10 lineup. Cost-Optimized CX Gen3 (Intel/AMD shared), EU only: cx23 2 vCPU 4 GB
    # 40 GB ... cx53 16/32/320 (docs.hetzner.com/cloud/servers/overview; pulumi-hcloud#939 moved its
    # examples to cx23; apricote/hcloud-upload-image#129). Regular Performance CPX Gen2 (AMD
    # shared): cpx12 1 vCPU 2 GB 40 GB ... cpx62, EU, US and SIN (robhunter/agentdeals#1286 lists
    # cpx12/cpx22 EU and SIN prices; docs.cnap.tech lists cpx22 for ash/hil). CAX (Ampere Arm
    # shared), EU only. CCX Gen3 dedicated, every location. The category strings are the API's
    # `category` field ("cost_optimized" seen in API samples; the others are this fixture's).
    HcloudType("cx23", 2, 4, 40, "x86", "shared", "cost_optimized", HCLOUD_EU),
    HcloudType("cx33", 4, 8, 80, "x86", "shared", "cost_optimized", HCLOUD_EU),
    HcloudType("cx43", 8, 16, 160, "x86", "shared", "cost_optimized", HCLOUD_EU),
    HcloudType("cx53", 16, 32, 320, "x86", "shared", "cost_optimized", HCLOUD_EU),
    HcloudType("cpx12", 1, 2, 40, "x86", "shared", "regular_purpose", HCLOUD_ALL),
    HcloudType("cpx22", 2, 4, 80, "x86", "shared", "regular_purpose", HCLOUD_ALL),
    HcloudType("cpx32", 4, 8, 160, "x86", "shared", "regular_purpose", HCLOUD_ALL),
    HcloudType("cpx42", 8, 16, 320, "x86", "shared", "regular_purpose", HCLOUD_ALL),
    HcloudType("cax11", 2, 4, 40, "arm", "shared", "cost_optimized", HCLOUD_EU),
    HcloudType("cax21", 4, 8, 80, "arm", "shared", "cost_optimized", HCLOUD_EU),
    HcloudType("cax31", 8, 16, 160, "arm", "shared", "cost_optimized", HCLOUD_EU),
    HcloudType("ccx13", 2, 8, 80, "x86", "dedicated", "general_purpose", HCLOUD_ALL),
    HcloudType("ccx23", 4, 16, 160, "x86", "dedicated", "general_purpose", HCLOUD_ALL),
)

# --- Google Cloud -------------------------------------------------------------------------------
# Zones per region (cloud.google.com/compute/docs/regions-zones): us-east1 and europe-west1 have
# no zone a (b, c, d; gitlab-org/charts/gitlab!228: "some regions do not have an a zone (e.g.
# us-east1, europe-west1)"); europe-west3 a, b, c; us-central1 a, b, c, f.
GCP_ZONES: dict[str, tuple[str, ...]] = {
    "europe-west3": ("europe-west3-a", "europe-west3-b", "europe-west3-c"),
    "europe-west1": ("europe-west1-b", "europe-west1-c", "europe-west1-d"),
    "us-east1": ("us-east1-b", "us-east1-c", "us-east1-d"),
    "us-central1": ("us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"),
}
# Machine series per zone. E2, N1, N2, N2D are in every zone of these regions (regions-zones
# "Available machine series" table). Fourth-generation series roll out zone by zone; WHICH zones
# carry C4/C4A/N4 here is this fixture's choice (not a documented fact), made so a test can
# see a default zone skip a zone that lacks the series.
_EVERYWHERE = ("e2", "n1", "n2", "n2d")
GCP_SERIES: dict[str, tuple[str, ...]] = {
    **{z: _EVERYWHERE for zones in GCP_ZONES.values() for z in zones},
    "us-central1-a": (*_EVERYWHERE, "c4", "c4a", "n4", "t2a"),
    "us-central1-b": (*_EVERYWHERE, "c4", "c4a", "n4", "t2a"),
    "europe-west3-b": (*_EVERYWHERE, "c4", "n4"),
    "europe-west3-c": (*_EVERYWHERE, "c4", "c4a", "n4"),
    "us-east1-c": (*_EVERYWHERE, "c4", "c4a", "n4"),
}

# --- AWS ----------------------------------------------------------------------------------------
# Availability zones in state "available" (docs.aws.amazon.com/global-infrastructure: eu-central-1
# a-c, eu-west-1 a-c, us-east-1 a-f). us-east-1e (use1-az3) offers none of the current families:
# "Your requested instance type (t3.micro) is not supported in your requested Availability Zone
# (us-east-1e). Please retry ... choosing us-east-1a, us-east-1b, us-east-1c, us-east-1d,
# us-east-1f" (ned1313/Getting-Started-Terraform#44, RedHatGov/redhatgov.workshops#113, m5.large
# in openshift/release#22399). AZ names map to physical zones per account: ask, never assume.
AWS_ZONES: dict[str, tuple[str, ...]] = {
    "eu-central-1": ("eu-central-1a", "eu-central-1b", "eu-central-1c"),
    "eu-west-1": ("eu-west-1a", "eu-west-1b", "eu-west-1c"),
    "us-east-1": ("us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d", "us-east-1e", "us-east-1f"),
}
_AWS_FAMILIES = ("t3", "t3a", "t4g", "m5", "m7i", "m7g", "c7g")
AWS_FAMILIES: dict[str, tuple[str, ...]] = {
    **{z: _AWS_FAMILIES for zones in AWS_ZONES.values() for z in zones},
    "us-east-1e": ("m4", "c4", "t2"),  # older families only (the errors above)
    "eu-central-1a": ("t3", "t3a", "t4g", "m5", "m7i"),  # fixture choice: no Graviton 3 in 1a
}


# --- Networks the user already has (nodes placed into them) ---------------------------------------
# Fixture values, not facts: ids in EC2's 17-hex-digit form, a GCP network and subnetwork of a
# project, a Hetzner Cloud Network with its id. Each invoke answers as the provider's data source
# does; an unknown id is refused as the provider refuses it ("no matching EC2 VPC found",
# terraform-provider-aws vpc data source; "The resource 'projects/p/global/networks/x' was not
# found", Compute API 404; hcloud data source "no Network found with id").
USER_VPC = "vpc-0a1b2c3d4e5f60718"
USER_SUBNET = "subnet-0a1b2c3d4e5f60719"
OTHER_VPC_SUBNET = "subnet-0f0e0d0c0b0a09080"
USER_ROUTE_TABLES = ("rtb-0a1b2c3d4e5f6071a", "rtb-0a1b2c3d4e5f6071b")
OTHER_VPC_TABLE = "rtb-0f0e0d0c0b0a09081"
GCP_PROJECT_LINK = "https://www.googleapis.com/compute/v1/projects/user-project"
HCLOUD_NETWORK_ID = 4711


def user_networks() -> dict[str, Any]:
    """What the user's account holds: VPCs, subnets, route tables, GCP networks, Hetzner networks."""
    local = {"cidrBlock": "172.31.0.0/16", "gatewayId": "local"}
    return {
        "vpcs": {
            USER_VPC: {"region": "eu-central-1", "cidr": "172.31.0.0/16", "igw": "igw-0a1b2c3d4e5f6071d"},
            "vpc-0f0e0d0c0b0a09089": {"region": "eu-central-1", "cidr": "172.30.0.0/16"},  # private
        },
        "subnets": {
            USER_SUBNET: {"region": "eu-central-1", "vpc": USER_VPC, "az": "eu-central-1a"},
            OTHER_VPC_SUBNET: {
                "region": "eu-central-1",
                "vpc": "vpc-0f0e0d0c0b0a09089",
                "az": "eu-central-1a",
            },
        },
        "route_tables": {
            USER_ROUTE_TABLES[0]: {"vpc": USER_VPC, "routes": [local]},
            USER_ROUTE_TABLES[1]: {"vpc": USER_VPC, "routes": [local]},
            OTHER_VPC_TABLE: {"vpc": "vpc-0f0e0d0c0b0a09089", "routes": []},
        },
        "gcp_networks": {"prod-vpc": {}},
        "gcp_subnetworks": {
            ("europe-west3", "prod-fra"): {"network": "prod-vpc", "cidr": "10.10.0.0/20"},
            ("us-east1", "prod-use"): {"network": "prod-vpc", "cidr": "10.11.0.0/20"},
        },
        "hcloud_networks": {HCLOUD_NETWORK_ID: {"name": "office", "ip_range": "10.20.0.0/16"}},
    }


_ROUTE_FIELDS = (  # every field of aws.ec2 GetRouteTableRouteResult: the SDK requires each
    "carrierGatewayId", "cidrBlock", "coreNetworkArn", "destinationPrefixListId", "egressOnlyGatewayId",
    "gatewayId", "instanceId", "ipv6CidrBlock", "localGatewayId", "natGatewayId", "networkInterfaceId",
    "odbNetworkArn", "transitGatewayId", "vpcEndpointId", "vpcPeeringConnectionId",
)  # fmt: skip


# An invoke the provider refused: no result, and (property, reason) failures (wgmesh_mocks.CallFailed).
Refused = tuple[dict[str, Any], list[tuple[str, str]]]


def _not_found(what: str) -> Refused:
    return {}, [("", what)]


@dataclass
class CloudCatalog:
    """The recorded offers; tests copy and edit it (`with_*`) to model a refusal."""

    hcloud: list[HcloudType] = field(default_factory=lambda: list(HCLOUD_TYPES))
    out_of_stock: set[tuple[str, str]] = field(default_factory=set)  # (type, location)
    gcp_zone_map: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(GCP_ZONES))
    gcp_series: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(GCP_SERIES))
    aws_zone_map: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(AWS_ZONES))
    aws_families: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(AWS_FAMILIES))
    aws_subnets: dict[str, dict[str, str]] = field(default_factory=dict)  # id -> tags + "az", from an `up`
    aws_vpcs: dict[str, dict[str, str]] = field(default_factory=dict)  # id -> tags + "region", "cidr"
    gcp_subnetworks: list[dict[str, str]] = field(default_factory=list)  # name, region, description, cidr
    user: dict[str, Any] = field(default_factory=user_networks)  # networks the user owns

    def copy(self) -> CloudCatalog:
        return copy.deepcopy(self)

    def remember_networks(self, resources: Sequence[Any], labels: dict[str, str]) -> CloudCatalog:
        """A copy holding the VPCs and subnetworks a mocked `up` created, as a later preview finds
        them: each VPC with its Name tag plus the provider's default tags (`labels`)."""
        out = self.copy()
        for r in resources:
            if r.type == "aws:ec2/vpc:Vpc":
                vpc = {**labels, **r.inputs.get("tags", {}), "cidr": r.inputs["cidrBlock"]}
                out.aws_vpcs[r.id] = {**vpc, "region": _aws_region(r.provider)}
            elif r.type == "gcp:compute/subnetwork:Subnetwork":
                out.gcp_subnetworks.append(
                    {
                        "name": r.name,
                        "region": r.inputs["region"],
                        "description": r.inputs.get("description", ""),
                        "cidr": r.inputs["ipCidrRange"],
                    }
                )
        return out

    # mesh.placement.Catalog, for the tests' expectations
    def hcloud_server_types(self) -> Sequence[ServerType]:
        return [
            ServerType(
                t.name,
                t.cores,
                t.memory,
                t.disk,
                t.architecture,
                t.cpu_type,
                t.category,
                tuple(
                    LocationOffer(
                        loc,
                        (t.name, loc) not in self.out_of_stock,
                        t.deprecated,
                        UNAVAILABLE_AFTER if t.deprecated else "",
                    )
                    for loc in t.locations
                ),
            )
            for t in self.hcloud
        ]

    def gcp_zones(self, region: str) -> Sequence[str]:
        return self.gcp_zone_map.get(region, ())

    def gcp_offers(self, zone: str, machine_type: str) -> bool:
        return machine_type.split("-", 1)[0] in self.gcp_series.get(zone, ())

    def aws_zones(self, region: str) -> Sequence[str]:
        return self.aws_zone_map.get(region, ())

    def aws_offerings(self, region: str, instance_types: Sequence[str]) -> dict[str, set[str]]:
        return {
            t: {z for z in self.aws_zone_map.get(region, ()) if t.split(".", 1)[0] in self.aws_families[z]}
            for t in instance_types
        }

    def aws_subnet_zone(self, region: str) -> str | None:
        return None  # the tests' expectations model a first `up`

    # the invokes, as the providers return them (camelCase outputs)
    def answer(self, token: str, args: dict[str, Any], provider: str) -> dict[str, Any] | Refused | None:
        """The invoke's result, or None when this catalog does not model the token."""
        user = self._user_network(token, args, provider)
        if user is not None:
            return user
        if token == "hcloud:index/getServerTypes:getServerTypes":
            return {"serverTypes": [self._hcloud_result(t) for t in self.hcloud_server_types()]}
        if token == "gcp:compute/getZones:getZones":
            assert args.get("status") == "UP", "ask for zones that are UP"
            return {"names": list(self.gcp_zones(args["region"])), "region": args["region"], "status": "UP"}
        if token == "gcp:compute/getMachineTypes:getMachineTypes":
            m = re.fullmatch(r"name = ([a-z0-9-]+)", args.get("filter", ""))
            assert m, f"unsupported machine type filter {args.get('filter')!r}"
            name = m.group(1)
            found = [{"name": name, "selfLink": f"zones/{args['zone']}/machineTypes/{name}"}]
            return {
                "machineTypes": found if self.gcp_offers(args["zone"], name) else [],
                "zone": args["zone"],
            }
        if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            assert args.get("state") == "available"
            return {"names": list(self.aws_zones(_aws_region(provider))), "state": "available"}
        if token == "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings":
            assert args.get("locationType") == "availability-zone"
            (flt,) = args["filters"]
            assert flt["name"] == "instance-type"
            offered = self.aws_offerings(_aws_region(provider), flt["values"])
            pairs = sorted((t, z) for t, zones in offered.items() for z in zones)
            return {
                "instanceTypes": [t for t, _ in pairs],
                "locations": [z for _, z in pairs],
                "locationTypes": ["availability-zone"] * len(pairs),
            }
        if token == "aws:ec2/getSubnets:getSubnets":
            region, tags = _aws_region(provider), args.get("tags", {})
            ids = [i for i, t in self.aws_subnets.items() if t["region"] == region and _tagged(t, tags)]
            return {"ids": ids, "tags": tags}
        if token == "aws:ec2/getVpcs:getVpcs":
            region, tags = _aws_region(provider), args.get("tags", {})
            ids = [i for i, t in self.aws_vpcs.items() if t["region"] == region and _tagged(t, tags)]
            return {"ids": ids, "tags": tags}
        if token == "aws:ec2/getVpc:getVpc":
            return {"id": args["id"], "cidrBlock": self.aws_vpcs[args["id"]]["cidr"]}
        if token == "gcp:compute/getSubnetworks:getSubnetworks":
            return {"subnetworks": self._subnetworks(args), "region": args.get("region")}
        if token == "aws:ec2/getSubnet:getSubnet":
            return {"id": args["id"], "availabilityZone": self.aws_subnets[args["id"]]["az"]}
        return None

    def _user_network(
        self, token: str, args: dict[str, Any], provider: str
    ) -> dict[str, Any] | Refused | None:
        """The invokes reading a network the user owns (components/existing.py), or None."""
        u = self.user
        if token == "aws:ec2/getVpc:getVpc" and args["id"] not in self.aws_vpcs:
            vpc = u["vpcs"].get(args["id"])
            if vpc is None or vpc["region"] != _aws_region(provider):
                return _not_found("no matching EC2 VPC found")
            return {"id": args["id"], "cidrBlock": vpc["cidr"]}
        if token == "aws:ec2/getSubnet:getSubnet" and args["id"] not in self.aws_subnets:
            sub = u["subnets"].get(args["id"])
            if sub is None or sub["region"] != _aws_region(provider):
                return _not_found("no matching EC2 Subnet found")
            return {"id": args["id"], "vpcId": sub["vpc"], "availabilityZone": sub["az"]}
        if token == "aws:ec2/getInternetGateway:getInternetGateway":
            ((flt),) = args["filters"]
            assert flt["name"] == "attachment.vpc-id", flt
            (vpc_id,) = flt["values"]
            igw = u["vpcs"].get(vpc_id, {}).get("igw")
            if igw is None:  # terraform-provider-aws: "no matching EC2 Internet Gateway found"
                return _not_found("no matching EC2 Internet Gateway found")
            attachments = [{"state": "available", "vpcId": vpc_id}]
            return {
                "id": igw,
                "internetGatewayId": igw,
                "attachments": attachments,
                "filters": args["filters"],
            }
        if token == "aws:ec2/getRouteTable:getRouteTable":
            table = u["route_tables"].get(args.get("routeTableId"))
            if table is None:
                return _not_found("query returned no results. Please change your search criteria")
            routes = [{f: r.get(f, "") for f in _ROUTE_FIELDS} for r in table["routes"]]
            return {
                "id": args["routeTableId"],
                "routeTableId": args["routeTableId"],
                "vpcId": table["vpc"],
                "routes": routes,
            }
        if token == "gcp:compute/getNetwork:getNetwork":
            if args["name"] not in u["gcp_networks"]:
                return _not_found(
                    f"The resource 'projects/user-project/global/networks/{args['name']}' was not found"
                )
            return {"name": args["name"], "selfLink": f"{GCP_PROJECT_LINK}/global/networks/{args['name']}"}
        if token == "gcp:compute/getSubnetwork:getSubnetwork":
            key = (args.get("region"), args.get("name"))
            sub = u["gcp_subnetworks"].get(key)
            if sub is None:
                link = f"projects/user-project/regions/{key[0]}/subnetworks/{key[1]}"
                return _not_found(f"The resource '{link}' was not found")
            return {
                "name": key[1],
                "region": key[0],
                "ipCidrRange": sub["cidr"],
                "network": f"{GCP_PROJECT_LINK}/global/networks/{sub['network']}",
                "selfLink": f"{GCP_PROJECT_LINK}/regions/{key[0]}/subnetworks/{key[1]}",
            }
        if token == "hcloud:index/getNetwork:getNetwork":
            nets = u["hcloud_networks"]
            wanted = args.get("id")
            found = [
                (i, n)
                for i, n in nets.items()
                if (wanted is not None and i == int(wanted)) or n["name"] == args.get("name")
            ]
            if not found:
                by = f"id {wanted}" if wanted is not None else f"name {args.get('name')}"
                return _not_found(f"no Network found with {by}")
            (i, n), *_ = found
            return {
                "id": i,
                "name": n["name"],
                "ipRange": n["ip_range"],
                "labels": {},
                "deleteProtection": False,
            }
        return None

    def _subnetworks(self, args: dict[str, Any]) -> list[dict[str, str]]:
        """subnetworks.list in a region with the one filter form the program sends."""
        m = re.fullmatch(r'description = "([^"]*)"', args.get("filter", ""))
        assert m, f"unsupported subnetwork filter {args.get('filter')!r}"
        return [
            {"name": s["name"], "description": s["description"], "ipCidrRange": s["cidr"]}
            for s in self.gcp_subnetworks
            if s["region"] == args["region"] and s["description"] == m.group(1)
        ]

    @staticmethod
    def _hcloud_result(t: ServerType) -> dict[str, Any]:
        return {
            "name": t.name,
            "cores": t.cores,
            "memory": t.memory,
            "disk": t.disk,
            "architecture": t.architecture,
            "cpuType": t.cpu_type,
            "category": t.category,
            "isDeprecated": any(o.deprecated for o in t.locations),
            "deprecationAnnounced": DEPRECATION_ANNOUNCED if any(o.deprecated for o in t.locations) else "",
            "unavailableAfter": UNAVAILABLE_AFTER if any(o.deprecated for o in t.locations) else "",
            "description": t.name.upper(),
            "id": 0,
            "includedTraffic": 0,
            "storageType": "local",
            "locations": [
                {
                    "name": o.name,
                    "id": 0,
                    "available": o.available,
                    "recommended": o.available and not o.deprecated,
                    "isDeprecated": o.deprecated,
                    "deprecationAnnounced": DEPRECATION_ANNOUNCED if o.deprecated else "",
                    "unavailableAfter": o.unavailable_after,
                }
                for o in t.locations
            ],
        }


def _tagged(subnet: dict[str, str], tags: dict[str, str]) -> bool:
    assert tags, "look the subnet up by its tags"
    return all(subnet.get(k) == v for k, v in tags.items())


def _aws_region(provider: str) -> str:
    """The region of an invoke's explicit provider (`...::aws-<region>::<id>`)."""
    m = re.search(r"::aws-([a-z0-9-]+)::", provider or "")
    assert m, f"AWS invoke without the region's explicit provider: {provider!r}"
    return m.group(1)
