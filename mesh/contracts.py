"""What each cloud accepts for the strings and lists the program sends it: one rule each, with its source.

Pure data and checks (no Pulumi). The spec refuses a node name whose derived cloud names would
break a rule (`node_name_problems`), `label_value` makes a stack name a valid label value, and
the program tests' mocks (tests/program/contract_mocks.py) refuse every input the cloud's API
would refuse, using these same rules.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

# Pulumi auto-naming: a resource whose `name` the program leaves unset is created as
# `<logical name>-<7 random hex>`; a result over the provider's max length is an error
# ("plus 7 random chars is longer than maximum length"), never truncated.
# Source: pulumi-terraform-bridge pkg/tfbridge/info/autonaming.go (AutoName: Separator "-",
# Randlen 7; ComputeAutoNameDefault -> resource.NewUniqueName), applied by SetAutonaming to
# every resource input called `name` (pulumi-aws, pulumi-gcp, pulumi-hcloud).
AUTONAME_SEPARATOR = "-"
AUTONAME_RANDOM_CHARS = 7


def autoname(logical: str, random_hex: str = "0" * AUTONAME_RANDOM_CHARS) -> str:
    """The physical name Pulumi gives a resource whose `name` input is unset."""
    return f"{logical}{AUTONAME_SEPARATOR}{random_hex[:AUTONAME_RANDOM_CHARS]}"


@dataclass(frozen=True)
class Rule:
    """A cloud's rule for one string: length bounds, allowed shape, reserved prefixes."""

    what: str  # e.g. "AWS security group name"
    max_len: int | None
    pattern: re.Pattern[str] | None = None  # the whole value must match
    shape: str = ""  # the pattern in words, for the message
    min_len: int = 1
    reserved_prefixes: tuple[str, ...] = ()  # refused case-insensitively
    char_ok: Callable[[str], bool] | None = None  # per-character test, where a regex cannot say it

    def violation(self, value: str) -> str | None:
        """Why the cloud refuses `value`, or None when it accepts it."""
        what = f"{self.what} {_shown(value)}"
        if len(value) < self.min_len:
            return f"{what} is shorter than {self.min_len} characters"
        if self.max_len is not None and len(value) > self.max_len:
            return f"{what} is {len(value)} characters, over the limit of {self.max_len}"
        for prefix in self.reserved_prefixes:
            if value.lower().startswith(prefix):
                return f"{what} must not start with {prefix!r}"
        if self.char_ok is not None:
            bad = sorted({c for c in value if not self.char_ok(c)})
            if bad:
                return f"{what} has characters outside {self.shape}: {''.join(bad)!r}"
        if self.pattern is not None and not self.pattern.fullmatch(value):
            return f"{what} must match {self.shape}"
        return None


SHOWN_CHARS = 80


def _shown(value: str) -> str:
    """The value quoted for a one-line message, cut short when long."""
    return repr(value) if len(value) <= SHOWN_CHARS else repr(value[: SHOWN_CHARS - 20]) + "..."


@dataclass(frozen=True)
class CountRule:
    """A cloud's limit on how many items one resource takes (tags, labels, rules)."""

    what: str
    max_items: int

    def violation(self, count: int) -> str | None:
        if count > self.max_items:
            return f"{count} {self.what}, over the limit of {self.max_items}"
        return None


# ------------------------------------------------------------------------------------- AWS

# EC2 CreateSecurityGroup GroupName / GroupDescription, IpRange.Description and
# Ipv6Range.Description: "Up to 255 characters in length. Valid characters: a-z, A-Z, 0-9,
# spaces, and ._-:/()#,@[]+=&;{}!$*"; GroupName "Can't start with sg-".
# https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateSecurityGroup.html
# https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_IpRange.html
# (terraform-provider-aws validates the same set: validSecurityGroupRuleDescription.)
_EC2_SG_CHARS = "a-zA-Z0-9 ._\\-:/()#,@\\[\\]+=&;{}!$*"
_EC2_SG_SHAPE = "a-z A-Z 0-9, space and ._-:/()#,@[]+=&;{}!$*"
_EC2_SG_RE = re.compile(f"[{_EC2_SG_CHARS}]*")
AWS_SG_NAME = Rule("AWS security group name", 255, _EC2_SG_RE, _EC2_SG_SHAPE, reserved_prefixes=("sg-",))
AWS_SG_DESCRIPTION = Rule("AWS security group description", 255, _EC2_SG_RE, _EC2_SG_SHAPE)
AWS_SG_RULE_DESCRIPTION = Rule(
    "AWS security group rule description", 255, _EC2_SG_RE, _EC2_SG_SHAPE, min_len=0
)

# Tags: "Maximum number of tags per resource: 50; maximum key length: 128 Unicode characters;
# maximum value length: 256; allowed characters across services: letters, numbers, spaces
# representable in UTF-8, and + - = . _ : / @; the aws: prefix is reserved for AWS use."
# https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/Using_Tags.html#tag-restrictions
_AWS_TAG_SHAPE = "letters, digits, spaces and + - = . _ : / @"


def _aws_tag_char(c: str) -> bool:
    return c.isalnum() or c.isspace() or c in "+-=._:/@"


AWS_TAG_KEY = Rule(
    "AWS tag key", 128, shape=_AWS_TAG_SHAPE, char_ok=_aws_tag_char, reserved_prefixes=("aws:",)
)
AWS_TAG_VALUE = Rule(
    "AWS tag value", 256, shape=_AWS_TAG_SHAPE, min_len=0, char_ok=_aws_tag_char, reserved_prefixes=("aws:",)
)
AWS_TAGS_PER_RESOURCE = CountRule("tags on one AWS resource", 50)

# ------------------------------------------------------------------------------------- GCP

# Resource names: "1-63 characters long, and comply with RFC1035 ... [a-z]([-a-z0-9]*[a-z0-9])?"
# https://cloud.google.com/compute/docs/naming-resources#resource-name-format
_RFC1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_RFC1035_SHAPE = "[a-z]([-a-z0-9]*[a-z0-9])? (lowercase, starts with a letter, ends with a letter or digit)"
GCP_NAME = Rule("GCP resource name", 63, _RFC1035, _RFC1035_SHAPE)
# Network tags: "Maximum number of tags per VM: 64; maximum characters for each tag: 63;
# lowercase letters, numbers, dashes; start with a lowercase letter, end with a number or a
# lowercase letter." https://cloud.google.com/vpc/docs/add-remove-network-tags#restrictions
GCP_NETWORK_TAG = Rule("GCP network tag", 63, _RFC1035, _RFC1035_SHAPE)
GCP_NETWORK_TAGS_PER_INSTANCE = CountRule("network tags on one GCP instance", 64)
# Labels: "up to 64 per resource; keys 1-63 characters, values 0-63; only lowercase letters,
# numeric characters, underscores and dashes; keys start with a lowercase letter."
# (International characters are allowed too; the program sends ASCII only.)
# https://cloud.google.com/compute/docs/labeling-resources#requirements
_GCP_LABEL_SHAPE = "[a-z0-9_-] (keys start with a lowercase letter)"
GCP_LABEL_KEY = Rule("GCP label key", 63, re.compile(r"[a-z][a-z0-9_-]*"), _GCP_LABEL_SHAPE)
GCP_LABEL_VALUE = Rule("GCP label value", 63, re.compile(r"[a-z0-9_-]*"), _GCP_LABEL_SHAPE, min_len=0)
GCP_LABELS_PER_RESOURCE = CountRule("labels on one GCP resource", 64)
# `description` of Compute resources (Network, Firewall, Address, Route, Instance): free text,
# "provide this field when you create the resource"; the reference states no length. 2048 is
# our cap, not a documented one (our descriptions are short literals).
# https://cloud.google.com/compute/docs/reference/rest/v1/firewalls (field `description`)
GCP_DESCRIPTION = Rule("GCP description", 2048, min_len=0)
# Custom hostname: "must be RFC 1035 compliant ... a fully qualified domain name of at least two
# labels ... up to 253 characters"; each label 1-63 characters.
# https://cloud.google.com/compute/docs/instances/custom-hostname-vm#limitations
GCP_HOSTNAME = Rule(
    "GCP instance hostname",
    253,
    re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z]([-a-z0-9]{0,61}[a-z0-9])?)+"),
    "an RFC 1035 FQDN of two or more labels of at most 63 characters",
)

# --------------------------------------------------------------------------------- Hetzner

# Server name: "must be unique per Project and a valid hostname as per RFC 1123".
# https://docs.hetzner.cloud/reference/cloud#servers-create-a-server
HCLOUD_SERVER_NAME = Rule(
    "Hetzner server name",
    253,
    re.compile(
        r"[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?)*"
    ),
    "an RFC 1123 hostname (letters, digits and '-', labels of at most 63 ending alphanumeric)",
)
# Firewall: "Name of the Firewall. Limited to a maximum of 128 characters. Must be unique per
# Project"; "Rules are limited to 50 entries per Firewall"; a rule's source_ips (and
# destination_ips): "You can specify 100 CIDR blocks at most". A rule's description is free
# text with no documented limit. https://docs.hetzner.cloud/reference/cloud#firewalls-create-a-firewall
HCLOUD_FIREWALL_NAME = Rule("Hetzner firewall name", 128)
HCLOUD_FIREWALL_RULES = CountRule("rules in one Hetzner firewall", 50)
HCLOUD_RULE_CIDRS = CountRule("CIDR blocks in one Hetzner firewall rule", 100)
# SSH keys and primary IPs: "Name of the Resource. Must be unique per Project." (no length or
# character rule documented); an SSH key's fingerprint must be unique per project too.
# https://docs.hetzner.cloud/reference/cloud#ssh-keys-create-an-ssh-key
HCLOUD_RESOURCE_NAME = Rule("Hetzner resource name", None)
# Labels: "keys have an optional prefix (a DNS subdomain of at most 253 characters followed
# by '/') and a name of at most 63 characters, beginning and ending with [a-z0-9A-Z] with
# '-', '_', '.' and alphanumerics between; values are empty or at most 63 characters matching
# ^(([a-z0-9A-Z][-a-z0-9_.A-Z]*)?[a-z0-9A-Z])?$". https://docs.hetzner.cloud/reference/cloud#labels
# (terraform-provider-hcloud hcloud/labels.go validates the same key and value patterns.)
_HCLOUD_LABEL_NAME = r"[a-z0-9A-Z]([-a-z0-9_.A-Z]{0,61}[a-z0-9A-Z])?"
HCLOUD_LABEL_KEY = Rule(
    "Hetzner label key",
    253 + 1 + 63,
    re.compile(rf"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?{_HCLOUD_LABEL_NAME}"),
    "[prefix/]name, the name 1-63 of [-a-z0-9_.A-Z] beginning and ending alphanumeric",
)
HCLOUD_LABEL_VALUE = Rule(
    "Hetzner label value",
    63,
    re.compile(r"(([a-z0-9A-Z][-a-z0-9_.A-Z]*)?[a-z0-9A-Z])?"),
    "^(([a-z0-9A-Z][-a-z0-9_.A-Z]*)?[a-z0-9A-Z])?$ (begins and ends alphanumeric)",
    min_len=0,
)


def _hcloud_label_key_prefix_ok(key: str) -> bool:
    prefix, sep, _ = key.rpartition("/")
    return not sep or len(prefix) <= 253


# ----------------------------------------------------------------------- checks of mappings


def tag_violations(tags: Mapping[str, str]) -> list[str]:
    """Every reason AWS refuses this tag set (keys, values, count)."""
    found = [v for k, val in tags.items() for v in (AWS_TAG_KEY.violation(k), AWS_TAG_VALUE.violation(val))]
    found.append(AWS_TAGS_PER_RESOURCE.violation(len(tags)))
    return [v for v in found if v]


def gcp_label_violations(labels: Mapping[str, str]) -> list[str]:
    """Every reason GCP refuses this label set."""
    found = [
        v for k, val in labels.items() for v in (GCP_LABEL_KEY.violation(k), GCP_LABEL_VALUE.violation(val))
    ]
    found.append(GCP_LABELS_PER_RESOURCE.violation(len(labels)))
    return [v for v in found if v]


def hcloud_label_violations(labels: Mapping[str, str]) -> list[str]:
    """Every reason Hetzner refuses this label set."""
    found: list[str | None] = []
    for k, val in labels.items():
        found.append(HCLOUD_LABEL_KEY.violation(k))
        if not _hcloud_label_key_prefix_ok(k):
            found.append(f"Hetzner label key {k!r} has a prefix over 253 characters")
        found.append(HCLOUD_LABEL_VALUE.violation(val))
    return [v for v in found if v]


def network_tag_violations(tags: list[str]) -> list[str]:
    """Every reason GCP refuses this instance's network tags."""
    found = [GCP_NETWORK_TAG.violation(t) for t in tags]
    found.append(GCP_NETWORK_TAGS_PER_INSTANCE.violation(len(tags)))
    if len(set(tags)) != len(tags):
        found.append(f"GCP network tags {tags!r} are not unique")
    return [v for v in found if v]


# --------------------------------------------------------------- names derived from the spec

LABEL_HASH_CHARS = 8


def label_value(text: str) -> str:
    """`text` as a label/tag value every cloud we label takes (Hetzner's rule is the strictest of
    Hetzner labels and AWS tags): unchanged when valid, else its valid core cut short plus a
    short hash of the whole text, so the value is stable and two texts never share one.

    Used for the stack name: Pulumi accepts `[A-Za-z0-9_.-]{1,100}`, Hetzner label values only
    63 characters that begin and end alphanumeric.
    """
    if HCLOUD_LABEL_VALUE.violation(text) is None and AWS_TAG_VALUE.violation(text) is None:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:LABEL_HASH_CHARS]
    core = re.sub(r"[^-a-z0-9_.A-Z]", "-", text)
    core = core[: HCLOUD_LABEL_VALUE.max_len - LABEL_HASH_CHARS - 1] if HCLOUD_LABEL_VALUE.max_len else core
    core = re.sub(r"^[^a-z0-9A-Z]+|[^a-z0-9A-Z]+$", "", core)
    return f"{core}-{digest}" if core else digest


# What the components derive from a node's name, per cloud: the longest of each kind, with
# Pulumi's auto-name suffix where the name input is left unset. components/ build these names;
# the program tests (31-character names through the contract-checking mocks) catch any drift.
_LONGEST_ROUTE_SLUG = "255-255-255-255-32"  # components.netplan.net_slug of an IPv4 network
_SUFFIX = "x" * AUTONAME_RANDOM_CHARS  # stands for the random part in messages; as valid as hex
NODE_DERIVED: dict[str, tuple[tuple[Rule, str], ...]] = {
    # Firewalls are shared per class and role (components/firewall.py): no firewall, security group
    # or network tag is named after a node any more, so only these derive from the node name.
    "aws": ((AWS_TAG_VALUE, "{node}"),),  # the instance's and Elastic IP's `Name` tag
    "gcp": (
        (GCP_NAME, autoname("{node}", _SUFFIX)),  # the instance
        (GCP_NAME, autoname("{node}-ip6", _SUFFIX)),  # static addresses
        (GCP_NAME, autoname(f"{{node}}-rt-{_LONGEST_ROUTE_SLUG}", _SUFFIX)),  # return routes
    ),
    "hcloud": (
        (HCLOUD_SERVER_NAME, autoname("{node}", _SUFFIX)),
        (HCLOUD_RESOURCE_NAME, autoname("{node}-ip6", _SUFFIX)),
        (HCLOUD_LABEL_VALUE, "{node}"),  # the `wgmesh-node` label
    ),
}


def node_name_problems(name: str, cloud: str) -> list[str]:
    """Why a node of this name on this cloud would be refused there (empty: it would not).

    Each problem names the derived value and the cloud's rule, so the user sees why a name
    the spec's own pattern allows still cannot be used (`sg-db`, `edge-`).
    """
    out = []
    for rule, template in NODE_DERIVED.get(cloud, ()):
        derived = template.format(node=name)
        reason = rule.violation(derived)
        if reason is not None:
            out.append(f"{name!r} cannot be used on {cloud}: {reason}")
    return out
