"""Contract-checking mocks: refuse a resource whose inputs the cloud's API would refuse.

Plain mocks accept any input; a real `pulumi up` does not. `ContractChecker.check` runs on every
registration (wgmesh_mocks.WgmeshMocks.new_resource) and raises `ContractViolation` with a
cloud-like message, so the run records an error as `pulumi up` would. What each resource
type sends (names, descriptions, tags, labels, network tags, hostnames) is one table entry
here; the rules themselves live once in mesh/contracts.py. A cloud resource type missing
from the table is refused too, so a new one cannot slip through unchecked.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pulumi

from cloudinit.render import USER_DATA_LIMITS
from mesh import contracts as c

SIG_KEY = "4dabf18193072939515e22adb298388d"  # a secret input's wrapper (wgmesh_mocks.SIG_KEY)
CLOUD_PACKAGES = ("aws", "gcp", "hcloud")
# Packages whose resources never reach a cloud API: local randomness, SSH commands, our components.
LOCAL_PACKAGES = ("random", "command", "wgmesh")


class ContractViolation(pulumi.RunError):
    """The cloud would refuse this resource's inputs (a RunError: `up` reports it as one line)."""


class UnknownCloudResource(AssertionError):
    """A cloud resource type the contract table has no entry for."""


@dataclass(frozen=True)
class Field:
    """One input the cloud checks: where it is (`a.b`, `a[].b`) and the rule it must meet."""

    path: str
    check: Callable[[Any], list[str]]


def rule(path: str, r: c.Rule) -> Field:
    def check(value: Any) -> list[str]:
        if not isinstance(value, str):
            return [f"{r.what} must be a string, got {value!r}"]
        found = r.violation(value)
        return [found] if found else []

    return Field(path, check)


def count(path: str, r: c.CountRule) -> Field:
    def check(value: Any) -> list[str]:
        found = r.violation(len(value)) if isinstance(value, list) else None
        return [found] if found else []

    return Field(path, check)


def mapping(path: str, fn: Callable[[dict[str, str]], list[str]]) -> Field:
    return Field(path, lambda value: fn(value) if isinstance(value, dict) else [f"{path} must be a map"])


def network_tags(path: str) -> Field:
    return Field(path, lambda value: c.network_tag_violations(list(value)))


def user_data(path: str, cloud: str, b64: bool = False) -> Field:
    """The cloud's user data size limit (encoded once, in cloudinit.render.USER_DATA_LIMITS)."""
    limit = USER_DATA_LIMITS[cloud]
    assert limit is not None

    def check(value: Any) -> list[str]:
        size = len(base64.b64decode(value)) if b64 else len(str(value).encode())
        return [f"user data is {size} bytes, over the {limit}-byte limit"] if size > limit else []

    return Field(path, check)


# Cloud API, networks add_route: "destination ... Must be one of private IPv4 ranges of RFC1918 or
# 0.0.0.0/0"; "gateway ... Cannot be the first IP of the networks ip_range ... or 172.31.1.1"
# (docs.hetzner.cloud/reference/cloud#networks; hcloud crate models/route.rs carries the text).
HCLOUD_PRIVATE = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))


def _hcloud_route_destination(value: Any) -> list[str]:
    try:
        net = ipaddress.IPv4Network(str(value))
    except ValueError:
        return [f"destination {value!r} is not an IPv4 network"]
    if net.prefixlen == 0 or any(net.subnet_of(p) for p in HCLOUD_PRIVATE):
        return []
    return [f"destination {net} is not a private IPv4 range of RFC1918 (invalid_input)"]


def _hcloud_route_gateway(value: Any) -> list[str]:
    try:
        ip = ipaddress.IPv4Address(str(value))
    except ValueError:
        return [f"gateway {value!r} is not an IPv4 address"]
    if str(ip) == "172.31.1.1":
        return ["gateway 172.31.1.1 is the public interface's gateway (invalid_input)"]
    return []


NAME = "name"  # the input Pulumi auto-names when the program leaves it unset
AWS_TAGS = mapping("tags", c.tag_violations)
GCP_LABELS = mapping("labels", c.gcp_label_violations)
HCLOUD_LABELS = mapping("labels", c.hcloud_label_violations)

# Per resource type: the inputs its cloud checks. An empty tuple: sends nothing a rule covers
# (ids, CIDRs, numbers), listed so the type is known.
TABLE: dict[str, tuple[Field, ...]] = {
    "pulumi:providers:aws": (mapping("defaultTags.tags", c.tag_violations),),
    "aws:ec2/vpc:Vpc": (AWS_TAGS,),
    "aws:ec2/subnet:Subnet": (AWS_TAGS,),
    "aws:ec2/internetGateway:InternetGateway": (AWS_TAGS,),
    "aws:ec2/routeTable:RouteTable": (AWS_TAGS,),
    "aws:ec2/route:Route": (),
    "aws:ec2/routeTableAssociation:RouteTableAssociation": (),
    "aws:ec2/eip:Eip": (AWS_TAGS,),
    "aws:ec2/eipAssociation:EipAssociation": (),
    "aws:ec2/instance:Instance": (AWS_TAGS, user_data("userDataBase64", "aws", b64=True)),
    "aws:ec2/securityGroup:SecurityGroup": (
        rule(NAME, c.AWS_SG_NAME),
        rule("description", c.AWS_SG_DESCRIPTION),
        rule("ingress[].description", c.AWS_SG_RULE_DESCRIPTION),
        rule("egress[].description", c.AWS_SG_RULE_DESCRIPTION),
        AWS_TAGS,
    ),
    "pulumi:providers:gcp": (mapping("defaultLabels", c.gcp_label_violations),),
    "gcp:compute/network:Network": (rule(NAME, c.GCP_NAME), rule("description", c.GCP_DESCRIPTION)),
    "gcp:compute/subnetwork:Subnetwork": (rule(NAME, c.GCP_NAME), rule("description", c.GCP_DESCRIPTION)),
    "gcp:compute/address:Address": (
        rule(NAME, c.GCP_NAME),
        rule("description", c.GCP_DESCRIPTION),
        GCP_LABELS,
    ),
    "gcp:compute/firewall:Firewall": (
        rule(NAME, c.GCP_NAME),
        rule("description", c.GCP_DESCRIPTION),
        network_tags("targetTags"),
        network_tags("sourceTags"),
    ),
    "gcp:compute/route:Route": (
        rule(NAME, c.GCP_NAME),
        rule("description", c.GCP_DESCRIPTION),
        network_tags("tags"),
    ),
    "gcp:compute/instance:Instance": (
        rule(NAME, c.GCP_NAME),
        rule("description", c.GCP_DESCRIPTION),
        rule("hostname", c.GCP_HOSTNAME),
        network_tags("tags"),
        GCP_LABELS,
        user_data("metadata.user-data", "gcp"),
    ),
    "hcloud:index/server:Server": (
        rule(NAME, c.HCLOUD_SERVER_NAME),
        HCLOUD_LABELS,
        user_data("userData", "hcloud"),
    ),
    "hcloud:index/firewall:Firewall": (
        rule(NAME, c.HCLOUD_FIREWALL_NAME),
        count("rules", c.HCLOUD_FIREWALL_RULES),
        count("rules[].sourceIps", c.HCLOUD_RULE_CIDRS),
        count("rules[].destinationIps", c.HCLOUD_RULE_CIDRS),
        HCLOUD_LABELS,
    ),
    "hcloud:index/sshKey:SshKey": (rule(NAME, c.HCLOUD_RESOURCE_NAME), HCLOUD_LABELS),
    "hcloud:index/primaryIp:PrimaryIp": (rule(NAME, c.HCLOUD_RESOURCE_NAME), HCLOUD_LABELS),
    # Existing networks: a route the node adds to the user's Cloud Network.
    "hcloud:index/networkRoute:NetworkRoute": (
        Field("destination", _hcloud_route_destination),
        Field("gateway", _hcloud_route_gateway),
    ),
}


def cloud_of(typ: str) -> str | None:
    """The cloud a resource type talks to (`aws`, `gcp`, `hcloud`), or None for local ones."""
    package = typ.split(":")[2] if typ.startswith("pulumi:providers:") else typ.split(":", 1)[0]
    if package in CLOUD_PACKAGES:
        return package
    if package in LOCAL_PACKAGES:
        return None
    raise UnknownCloudResource(f"{typ}: a package the contract table does not know")


def api_error(cloud: str, field: str, reason: str) -> str:
    """The violation worded the way the cloud's API answers (so logs read like a real `up`)."""
    if cloud == "aws":
        return f"InvalidParameterValue: {reason}"
    if cloud == "gcp":
        return f"googleapi: Error 400: Invalid value for field 'resource.{field}': {reason}, invalid"
    return f"invalid input in field '{field}' (invalid_input): {reason}"


def _values(value: Any, path: list[str]) -> Iterator[Any]:
    """The values at `path` (a list step `x[]` walks every item); absent inputs yield nothing."""
    if is_secret(value):
        value = value["value"]
    if isinstance(value, str) and path and value[:1] in "{[":
        value = json.loads(value)  # provider inputs arrive JSON-encoded
    if not path:
        if value is not None:
            yield value
        return
    step, rest = path[0], path[1:]
    each = step.endswith("[]")
    key = step.removesuffix("[]")
    if not isinstance(value, dict) or value.get(key) is None:
        return
    inner = value[key]
    if is_secret(inner):
        inner = inner["value"]
    if each:
        for item in inner if isinstance(inner, list) else []:
            yield from _values(item, rest) if rest else [item]
    else:
        yield from _values(inner, rest)


def is_secret(value: object) -> bool:
    return isinstance(value, dict) and SIG_KEY in value


def physical_name(logical: str, inputs: dict[str, Any]) -> str:
    """The `name` the cloud sees: the input when set, else Pulumi's auto-name of the logical name."""
    given = inputs.get(NAME)
    if isinstance(given, str):
        return given
    return c.autoname(logical, hashlib.sha256(logical.encode()).hexdigest())


class ContractChecker:
    """Checks each registered resource against its cloud's contract; keeps per-account state
    the cloud checks across resources (AWS provider default tags, Hetzner SSH key fingerprints)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.default_tags: dict[str, dict[str, str]] = {}  # AWS provider name -> its default tags
        self.ssh_keys: dict[str, str] = {}  # Hetzner key material -> the SshKey holding it

    def check(self, typ: str, name: str, inputs: dict[str, Any], provider: str | None) -> None:
        cloud = cloud_of(typ)
        if cloud is None:
            return
        fields = TABLE.get(typ)
        if fields is None:
            raise UnknownCloudResource(f"{typ}: no entry in the contract table (contract_mocks.TABLE)")
        values = dict(inputs)
        if any(f.path == NAME for f in fields):
            values[NAME] = physical_name(name, inputs)
        if cloud == "aws":
            values = self._with_default_tags(typ, name, values, provider)
        for f in fields:
            for value in _values(values, f.path.split(".")):
                for reason in f.check(value):
                    raise ContractViolation(f"creating {typ} {name}: {api_error(cloud, f.path, reason)}")
        if typ == "hcloud:index/sshKey:SshKey":
            self._unique_ssh_key(name, inputs)

    def _with_default_tags(
        self, typ: str, name: str, values: dict[str, Any], provider: str | None
    ) -> dict[str, Any]:
        """AWS merges the provider's default tags into each resource's: checked and counted together."""
        with self.lock:
            if typ == "pulumi:providers:aws":
                tags: dict[str, str] = next(_values(values, ["defaultTags", "tags"]), {})
                self.default_tags[name] = dict(tags)
                return values
            defaults = self.default_tags.get(provider.split("::")[-2], {}) if provider else {}
        if "tags" not in values and not defaults:
            return values
        return {**values, "tags": {**defaults, **(values.get("tags") or {})}}

    def _unique_ssh_key(self, name: str, inputs: dict[str, Any]) -> None:
        """Hetzner refuses a second SSH key with the same fingerprint in one project."""
        material = " ".join(str(inputs.get("publicKey", "")).split()[:2])
        with self.lock:
            other = self.ssh_keys.setdefault(material, name)
        if other != name:
            raise ContractViolation(
                f"creating hcloud:index/sshKey:SshKey {name}: SSH key with the same fingerprint "
                f"already exists ({other}) (uniqueness_error)"
            )
