"""The cloud quotas a mesh counts against: each default once, with where it is documented.

Pure data (no Pulumi). `components/quota_plan.py` counts what a stack needs of each;
`wgmesh:quotas` keys are the `key` fields here. Numbers are the defaults of a new account or
project; an account whose quota was raised says so in the stack file, and on AWS the program
reads the number in force from Service Quotas (components/quota_aws.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# AWS VPC quotas: https://docs.aws.amazon.com/vpc/latest/userguide/amazon-vpc-limits.html
AWS_VPC_LIMITS = "https://docs.aws.amazon.com/vpc/latest/userguide/amazon-vpc-limits.html"
# GCP: "Not all projects have the same quotas" (https://cloud.google.com/compute/resource-usage);
# the numbers below are what new projects are commonly given (issue reports quoted per quota).
GCP_QUOTAS_CONSOLE = "https://console.cloud.google.com/iam-admin/quotas"
# Hetzner: per-account limits are shown, and raised on request, at https://console.hetzner.cloud/limits
# (https://docs.hetzner.com/cloud/general/faq/#are-there-limits-to-the-number-of-resources-i-can-get).
HCLOUD_LIMITS_CONSOLE = "https://console.hetzner.cloud/limits"
# Hetzner firewall limits: https://docs.hetzner.com/cloud/firewalls/faq/ ("Assign up to 5 active
# Firewalls per server; create up to 50 Firewalls total across your projects") and the API's
# "Set Rules" action ("Rules are limited to 50 entries per Firewall and 500 effective rules").
HCLOUD_FIREWALL_FAQ = "https://docs.hetzner.com/cloud/firewalls/faq/"


@dataclass(frozen=True)
class Quota:
    """One quota: its `wgmesh:quotas` key, what the cloud calls it, its default and how to raise it."""

    cloud: str  # aws | gcp | hcloud
    key: str  # wgmesh:quotas key (camelCase)
    name: str  # the cloud's own name for it, as its console shows
    default: int | None  # None: no published default (the need is printed, never refused)
    regional: bool  # counted per AWS/GCP region; else per GCP project / Hetzner account
    source: str  # where the default is documented
    aws_code: tuple[str, str] | None = None  # (service code, quota code) in AWS Service Quotas
    gcp_quota_id: str = ""  # Cloud Quotas quota id, e.g. FIREWALLS-per-project


def _aws(key: str, name: str, default: int, service: str, code: str, source: str = AWS_VPC_LIMITS) -> Quota:
    return Quota("aws", key, name, default, True, source, aws_code=(service, code))


AWS_QUOTAS: tuple[Quota, ...] = (
    _aws("elasticIps", "Elastic IP addresses per Region", 5, "ec2", "L-0263D0A3"),
    _aws("vpcs", "VPCs per Region", 5, "vpc", "L-F678F1CE"),
    _aws("internetGateways", "Internet gateways per Region", 5, "vpc", "L-A4707A72"),
    _aws("securityGroups", "VPC security groups per Region", 2500, "vpc", "L-E79EC296"),
    # "enforced separately for IPv4 rules and IPv6 rules": the need is the larger family's count.
    _aws("rulesPerSecurityGroup", "Inbound or outbound rules per security group", 60, "vpc", "L-0EA8095F"),
    # This quota times rulesPerSecurityGroup cannot exceed 1,000 (same page).
    _aws("securityGroupsPerInterface", "Security groups per network interface", 5, "vpc", "L-2AFB9258"),
    # Non-propagated routes, "enforced separately for IPv4 routes and IPv6 routes".
    _aws("routesPerRouteTable", "Routes per route table", 50, "vpc", "L-93826ACB"),
    # AWS publishes no fixed default for vCPU quotas; new accounts have been given 5 (a measured
    # example: the aws_servicequotas_service_quota check in public Terraform roots, 2026). The
    # program reads the account's own number at preview.
    _aws(
        "standardVcpus",
        "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances (vCPUs)",
        5,
        "ec2",
        "L-1216C47A",
        "https://docs.aws.amazon.com/ec2/latest/instancetypes/ec2-instance-quotas.html",
    ),
)


def _gcp(key: str, name: str, default: int, regional: bool, quota_id: str, source: str) -> Quota:
    return Quota("gcp", key, name, default, regional, source, gcp_quota_id=quota_id)


GCP_QUOTAS: tuple[Quota, ...] = (
    # "Quota 'NETWORKS' exceeded. Limit: 5.0 globally" (github.com/fortinet/fortigate-tutorial-gcp/issues/9).
    _gcp("networks", "NETWORKS", 5, False, "NETWORKS-per-project", "https://cloud.google.com/vpc/docs/quota"),
    _gcp(
        "subnetworks",
        "SUBNETWORKS",
        100,
        False,
        "SUBNETWORKS-per-project",
        "https://cloud.google.com/vpc/docs/quota",
    ),
    # New projects get 100 to 500 firewall rules (seen on real projects); plan for the low end.
    _gcp(
        "firewalls",
        "FIREWALLS",
        100,
        False,
        "FIREWALLS-per-project",
        "https://cloud.google.com/vpc/docs/quota",
    ),
    # Custom static routes; "GCE route quota is only 100 by default" (github.com/flannel-io/flannel/pull/880).
    _gcp("routes", "ROUTES", 100, False, "ROUTES-per-project", "https://cloud.google.com/vpc/docs/quota"),
    # Reserved regional external IPv4: 8 on new projects (seen on a real project; 7-8 in
    # cloudfoundry/bosh-google-cpi-release#168, 1 on free trials).
    _gcp(
        "staticAddresses",
        "STATIC_ADDRESSES",
        8,
        True,
        "STATIC-ADDRESSES-per-project-region",
        "https://cloud.google.com/vpc/docs/quota",
    ),
    # External IPv4 in use by VMs: 8 on new projects
    # (hashicorp-education/learn-terraform-provision-gke-cluster#4; 4 on free trials).
    _gcp(
        "inUseAddresses",
        "IN_USE_ADDRESSES",
        8,
        True,
        "IN-USE-ADDRESSES-per-project-region",
        "https://cloud.google.com/compute/resource-usage",
    ),
    # Regional CPUS (E2, N1, f1/g1 count here; other series have their own <SERIES>_CPUS quota):
    # 24 on new paid projects, 8 on free trials (mesosphere-backup/terraform-dcos#61).
    _gcp(
        "cpus", "CPUS", 24, True, "CPUS-per-project-region", "https://cloud.google.com/compute/resource-usage"
    ),
    # Not counted: the regional external IPv6 addresses nodes reserve with `cidr6` or
    # `endpoints: ipv6`; no quota name or default for them was found documented.
)


def _hcloud(key: str, name: str, default: int | None, source: str) -> Quota:
    return Quota("hcloud", key, name, default, False, source)


HCLOUD_QUOTAS: tuple[Quota, ...] = (
    # New accounts: 10 servers (hetznercloud/hcloud-go#302: "resource_limit_exceeded because I
    # already had 10 VPS servers"), primary IPs likewise (vitobotta/hetzner-k3s#175: "10 servers + 10 ip").
    _hcloud("servers", "Servers", 10, HCLOUD_LIMITS_CONSOLE),
    _hcloud("primaryIps", "Primary IPs", 10, HCLOUD_LIMITS_CONSOLE),
    _hcloud("firewalls", "Firewalls (all projects of the account)", 50, HCLOUD_FIREWALL_FAQ),
    _hcloud("rulesPerFirewall", "Rules per firewall", 50, HCLOUD_FIREWALL_FAQ),
    _hcloud("firewallsPerServer", "Firewalls per server", 5, HCLOUD_FIREWALL_FAQ),
    _hcloud("sshKeys", "SSH keys", None, "https://docs.hetzner.cloud/reference/cloud#ssh-keys"),
)

ALL_QUOTAS = (*AWS_QUOTAS, *GCP_QUOTAS, *HCLOUD_QUOTAS)
QUOTAS: dict[tuple[str, str], Quota] = {(q.cloud, q.key): q for q in ALL_QUOTAS}


def raise_hint(quota: Quota, region: str | None, needed: int) -> str:
    """How to raise `quota` to `needed`: the console page and, where there is one, the CLI command."""
    if quota.aws_code is not None:
        service, code = quota.aws_code
        # Same VPC quotas page: rules per group x groups per interface may not exceed 1,000.
        cap = (
            "; AWS caps it at 1000 / securityGroupsPerInterface"
            if quota.key == "rulesPerSecurityGroup"
            else ""
        )
        return (
            f"https://console.aws.amazon.com/servicequotas/home/services/{service}/quotas/{code} or "
            f"`aws service-quotas request-service-quota-increase --region {region} "
            f"--service-code {service} --quota-code {code} --desired-value {needed}`{cap}"
        )
    if quota.cloud == "gcp":
        dims = f" --dimensions=region={region}" if region else ""
        return (
            f"{GCP_QUOTAS_CONSOLE} or `gcloud quotas preferences create "
            f"--service=compute.googleapis.com --quota-id={quota.gcp_quota_id} "
            f"--preferred-value={needed}{dims} --project=PROJECT`"
        )
    if quota.key in ("servers", "primaryIps"):
        return f"request a higher limit at {HCLOUD_LIMITS_CONSOLE}"
    return f"a Hetzner support request ({quota.source} lists it as a limit)"


# ----------------------------------------------------------------------------- vCPUs per size

# AWS instance sizes: large = 2 vCPUs, xlarge = 4, Nxlarge = 4N; t2 nano/micro/small have 1,
# other burstable (t3, t3a, t4g) nano..medium have 2, other families' `medium` (Graviton) has 1.
# https://docs.aws.amazon.com/ec2/latest/instancetypes/gp.html (the vCPU column of each family).
AWS_STANDARD_FAMILIES = re.compile(r"[acdhimrtz]\d")
AWS_SIZE_RE = re.compile(r"(?P<n>\d*)xlarge")


def aws_vcpus(instance_type: str) -> int | None:
    """vCPUs of an AWS instance type, None when its size name does not say (metal, unknown)."""
    family, _, size = instance_type.partition(".")
    if size in ("nano", "micro", "small"):
        return 1 if family == "t2" else 2
    if size == "medium":
        return 2 if family.startswith("t") else 1
    if size == "large":
        return 2
    match = AWS_SIZE_RE.fullmatch(size)
    if match:
        return 4 * int(match.group("n") or 1)
    return None


def aws_counts_as_standard(instance_type: str) -> bool:
    """Whether the type's vCPUs count against L-1216C47A (families A, C, D, H, I, M, R, T, Z)."""
    return AWS_STANDARD_FAMILIES.match(instance_type) is not None


# GCP machine types: <series>-<kind>-<vCPUs>, custom <series>-custom-<vCPUs>-<MiB>; the shared-core
# e2-micro/small/medium have 2 vCPUs, f1-micro and g1-small 1
# (https://cloud.google.com/compute/docs/general-purpose-machines).
GCP_SHARED_CORE = {"e2-micro": 2, "e2-small": 2, "e2-medium": 2, "f1-micro": 1, "g1-small": 1}
GCP_SIZE_RE = re.compile(r"(?P<series>[a-z0-9]+)-(custom-(?P<c>\d+)-\d+|[a-z]+-(?P<n>\d+))")
GCP_CPUS_SERIES = ("e2", "n1", "f1", "g1")  # series whose vCPUs count against regional CPUS


def gcp_vcpus(machine_type: str) -> int | None:
    if machine_type in GCP_SHARED_CORE:
        return GCP_SHARED_CORE[machine_type]
    match = GCP_SIZE_RE.fullmatch(machine_type)
    if not match:
        return None
    return int(match.group("c") or match.group("n"))


def gcp_counts_as_cpus(machine_type: str) -> bool:
    return machine_type.split("-", 1)[0] in GCP_CPUS_SERIES
