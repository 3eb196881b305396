"""Existing cloud networks: the stack-file keys that put a node into a network it does not own.

AWS `vpcId` + `subnetId` (+ `routeTableIds`), GCP `network` + `subnetwork`, Hetzner `network`.
Pure: the shapes and the rules between keys are checked here at parse time; whether the ids
exist, and what their ranges are, is asked of the clouds at preview (components/existing.py).
The stack then creates only what it owns in that network: the node, its address, its firewall
and the routes it adds; never a VPC, subnet, network or route table in place of the user's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Protocol

# EC2 resource ids: a prefix and 8 (older) or 17 hex characters (the "longer IDs" AWS moved every
# resource type to in 2018: docs.aws.amazon.com/AWSEC2/latest/UserGuide/resource-ids.html).
AWS_ID_RE = {
    prefix: re.compile(rf"{prefix}-([0-9a-f]{{8}}|[0-9a-f]{{17}})") for prefix in ("vpc", "subnet", "rtb")
}
# GCP resource names: RFC 1035, 1-63 characters (cloud.google.com/compute/docs/naming-resources).
GCP_NAME = r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?"
GCP_PROJECT = r"[a-z][-a-z0-9.:]{4,61}[a-z0-9]"
GCP_PREFIX = r"(https://(www|compute)\.googleapis\.com/compute/(v1|beta)/)?"
GCP_NETWORK_RE = re.compile(
    rf"{GCP_PREFIX}(projects/(?P<project>{GCP_PROJECT})/global/networks/)?(?P<name>{GCP_NAME})"
)
GCP_SUBNETWORK_RE = re.compile(
    rf"{GCP_PREFIX}(projects/(?P<project>{GCP_PROJECT})/regions/(?P<region>[a-z]+-[a-z]+\d+)/subnetworks/)?"
    rf"(?P<name>{GCP_NAME})"
)
# Hetzner Cloud Network: a numeric id or its name (names are unique per project; 1-63 characters
# as the Cloud API's resource names, docs.hetzner.cloud "Labels and names").
HCLOUD_NAME_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")
# At most 50 routes in an EC2 route table by default (Amazon VPC quotas, "Routes per route table":
# docs.aws.amazon.com/vpc/latest/userguide/amazon-vpc-limits.html), adjustable to 1,000.
ROUTE_TABLES_PER_NODE = 20  # a bound on the list, not an AWS limit: each table gets its own routes


class ProblemSink(Protocol):
    def problem(self, key: str, message: str) -> None: ...


def existing_network_fields(
    r: ProblemSink, raw: Mapping[str, Any], key: str, cloud: str | None, region: str
) -> dict[str, Any]:
    """The NodeSpec fields of an existing network, each bad one reported under its key."""
    out: dict[str, Any] = {}
    vpc = _text(r, raw, "vpcId", key)
    subnet = _text(r, raw, "subnetId", key)
    tables = _tables(r, raw, key)
    network = _text(r, raw, "network", key)
    subnetwork = _text(r, raw, "subnetwork", key)
    aws_keys = [k for k, v in (("vpcId", vpc), ("subnetId", subnet), ("routeTableIds", tables)) if v]
    if cloud is not None and cloud != "aws":
        for k in aws_keys:
            r.problem(f"{key}.{k}", f"only AWS nodes take {k}; {cloud} nodes take `network`")
    elif cloud == "aws":
        for k, text in (("vpcId", vpc), ("subnetId", subnet)):
            prefix = k.removesuffix("Id")
            if text and not AWS_ID_RE[prefix].fullmatch(text):
                r.problem(f"{key}.{k}", f"{text!r} is not a {prefix} id ('{prefix}-' and 8 or 17 hex digits)")
        if subnet and not vpc:
            r.problem(f"{key}.subnetId", "needs vpcId: the VPC this subnet belongs to")
        if vpc and not subnet:
            r.problem(f"{key}.vpcId", "needs subnetId: the stack creates no subnet in a VPC it does not own")
        if tables and not vpc:
            r.problem(
                f"{key}.routeTableIds", "needs vpcId and subnetId: the tables of the VPC the node is in"
            )
        if tables and not raw.get("subnets"):
            # A reply from the VPC comes out of the tunnel with a VPC source address; peers drop it
            # unless that address is in the node's AllowedIPs, which are its `subnets`.
            r.problem(f"{key}.routeTableIds", "needs subnets: the VPC ranges the node routes into the mesh")
        out.update(vpc_id=vpc, subnet_id=subnet, route_table_ids=tuple(tables))
    if cloud == "gcp":
        out.update(_gcp(r, key, network, subnetwork, region))
    elif cloud == "hcloud":
        if subnetwork:
            r.problem(f"{key}.subnetwork", "only GCP nodes take subnetwork; Hetzner attaches to `network`")
        if network and not (network.isdigit() or HCLOUD_NAME_RE.fullmatch(network)):
            r.problem(f"{key}.network", f"{network!r} is neither a Hetzner network id nor a network name")
        if network and not raw.get("subnets"):
            r.problem(
                f"{key}.network",
                "needs subnets: the part of the network's range the node routes into the mesh",
            )
        out.update(network=network)
    elif cloud is not None:
        for k, v in (("network", network), ("subnetwork", subnetwork)):
            if v and cloud != "aws":
                r.problem(f"{key}.{k}", f"does not apply to `cloud: {cloud}` nodes")
            elif v:
                r.problem(
                    f"{key}.{k}", "only GCP and Hetzner nodes take it; AWS nodes take vpcId and subnetId"
                )
    return out


def _gcp(r: ProblemSink, key: str, network: str, subnetwork: str, region: str) -> dict[str, str]:
    if network and not GCP_NETWORK_RE.fullmatch(network):
        r.problem(f"{key}.network", f"{network!r} is not a GCP network name or self link")
    m = GCP_SUBNETWORK_RE.fullmatch(subnetwork) if subnetwork else None
    if subnetwork and m is None:
        r.problem(f"{key}.subnetwork", f"{subnetwork!r} is not a GCP subnetwork name or self link")
    elif m is not None and m.group("region") and region and m.group("region") != region:
        r.problem(f"{key}.subnetwork", f"is in region {m.group('region')}, the node in {region}")
    if network and not subnetwork:
        r.problem(
            f"{key}.network", "needs subnetwork: the stack creates no subnetwork in a network it does not own"
        )
    if subnetwork and not network:
        r.problem(f"{key}.subnetwork", "needs network: the network its firewall rules and routes go to")
    return {"network": network, "subnetwork": subnetwork}


def _text(r: ProblemSink, raw: Mapping[str, Any], name: str, key: str) -> str:
    value = raw.get(name)
    if value is None or value == "":
        return ""
    if name == "network" and isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return str(value)  # a Hetzner network id written as a number
    if not isinstance(value, str):
        r.problem(f"{key}.{name}", "must be a string")
        return ""
    return value.strip()


def _tables(r: ProblemSink, raw: Mapping[str, Any], key: str) -> list[str]:
    value = raw.get("routeTableIds")
    if value is None:
        return []
    if not isinstance(value, list):
        r.problem(f"{key}.routeTableIds", "must be a list of route table ids ('rtb-...')")
        return []
    out: list[str] = []
    for i, item in enumerate(value):
        k = f"{key}.routeTableIds[{i}]"
        if not isinstance(item, str) or not AWS_ID_RE["rtb"].fullmatch(item):
            r.problem(k, f"{item!r} is not a route table id ('rtb-' and 8 or 17 hex digits)")
        elif item in out:
            r.problem(k, f"{item!r} is listed twice")
        else:
            out.append(item)
    if len(out) > ROUTE_TABLES_PER_NODE:
        r.problem(f"{key}.routeTableIds", f"at most {ROUTE_TABLES_PER_NODE} route tables per node")
    return out
