"""Each cloud rule in mesh/contracts.py: a value the cloud takes passes, each kind of value it
refuses fails with a message that names the rule."""

from __future__ import annotations

import pytest

from mesh import contracts as c
from mesh.spec import NAME_RE

LONGEST_NODE = "n" * 31  # the longest name the spec's pattern allows


@pytest.mark.parametrize(
    ("rule", "good", "bad", "reason"),
    [
        (c.AWS_SG_NAME, "web-sg-1a2b3c4", "x" * 256, "over the limit of 255"),
        (c.AWS_SG_NAME, "web (prod) #1", "sg-web", "must not start with 'sg-'"),
        (c.AWS_SG_NAME, "web", "SG-web", "must not start with 'sg-'"),
        (c.AWS_SG_NAME, "web", "web's", "must match"),
        (c.AWS_SG_NAME, "web", "", "shorter than 1"),
        (c.AWS_SG_DESCRIPTION, "wgmesh node a-1", "wgmesh node's", "must match"),
        (c.AWS_SG_DESCRIPTION, "a" * 255, "a" * 256, "over the limit of 255"),
        (c.AWS_SG_RULE_DESCRIPTION, "", "peers' IPs", "must match"),
        (c.AWS_SG_RULE_DESCRIPTION, "ICMP (frag needed / too big)", "caf\u00e9", "must match"),
        (c.AWS_SG_RULE_DESCRIPTION, "x" * 255, "x" * 256, "over the limit of 255"),
        (c.AWS_TAG_KEY, "wgmesh-stack", "aws:cloudformation", "must not start with 'aws:'"),
        (c.AWS_TAG_KEY, "Name", "k" * 129, "over the limit of 128"),
        (c.AWS_TAG_KEY, "a b.c:d/e=f+g-h@i_j", "a#b", "has characters outside"),
        (c.AWS_TAG_KEY, "k", "", "shorter than 1"),
        (c.AWS_TAG_VALUE, "", "v" * 257, "over the limit of 256"),
        (c.AWS_TAG_VALUE, "dev.eu_1", "AWS:x", "must not start with 'aws:'"),
        (c.AWS_TAG_VALUE, "dev", "dev*", "has characters outside"),
        (c.GCP_NAME, "a" * 63, "a" * 64, "over the limit of 63"),
        (c.GCP_NAME, "a-1", "a-", "must match"),
        (c.GCP_NAME, "a1", "1a", "must match"),
        (c.GCP_NAME, "ab", "aB", "must match"),
        (c.GCP_NAME, "a-b", "a_b", "must match"),
        (c.GCP_NETWORK_TAG, "wgmesh-a", "wgmesh-a-", "must match"),
        (c.GCP_NETWORK_TAG, "t" * 63, "t" * 64, "over the limit of 63"),
        (c.GCP_LABEL_KEY, "wgmesh_stack-1", "1key", "must match"),
        (c.GCP_LABEL_KEY, "k" * 63, "k" * 64, "over the limit of 63"),
        (c.GCP_LABEL_VALUE, "", "dev.eu", "must match"),
        (c.GCP_LABEL_VALUE, "v" * 63, "Dev", "must match"),
        (c.GCP_DESCRIPTION, "d" * 2048, "d" * 2049, "over the limit of 2048"),
        (c.GCP_HOSTNAME, "node-1.example.com", "node-1", "must match"),
        (c.GCP_HOSTNAME, "a.b", "a..b", "must match"),
        (c.GCP_HOSTNAME, "a.b", ("a" * 60 + ".") * 5 + "bb", "over the limit of 253"),
        (c.HCLOUD_SERVER_NAME, "Node-1.example", "node_1", "must match"),
        (c.HCLOUD_SERVER_NAME, "n" * 63, "n" * 64, "must match"),
        (c.HCLOUD_SERVER_NAME, "a1", "-a", "must match"),
        (c.HCLOUD_FIREWALL_NAME, "f" * 128, "f" * 129, "over the limit of 128"),
        (c.HCLOUD_FIREWALL_NAME, "f", "", "shorter than 1"),
        (c.HCLOUD_RESOURCE_NAME, "any name at all", "", "shorter than 1"),
        (c.HCLOUD_LABEL_KEY, "example.com/wgmesh-node", "-node", "must match"),
        (c.HCLOUD_LABEL_KEY, "k" * 63, "k" * 64, "must match"),
        (c.HCLOUD_LABEL_KEY, "a.b/c", "a_b/c", "must match"),
        (c.HCLOUD_LABEL_VALUE, "", "dev_", "must match"),
        (c.HCLOUD_LABEL_VALUE, "Dev.eu_1-x", ".dev", "must match"),
        (c.HCLOUD_LABEL_VALUE, "v" * 63, "v" * 64, "over the limit of 63"),
    ],
)
def test_each_rule_takes_the_good_value_and_refuses_the_bad(
    rule: c.Rule, good: str, bad: str, reason: str
) -> None:
    assert rule.violation(good) is None
    message = rule.violation(bad)
    assert message is not None and reason in message and rule.what in message


@pytest.mark.parametrize(
    ("rule", "limit"),
    [
        (c.AWS_TAGS_PER_RESOURCE, 50),
        (c.GCP_NETWORK_TAGS_PER_INSTANCE, 64),
        (c.GCP_LABELS_PER_RESOURCE, 64),
        (c.HCLOUD_FIREWALL_RULES, 50),
        (c.HCLOUD_RULE_CIDRS, 100),
    ],
)
def test_count_rules_stop_at_their_limit(rule: c.CountRule, limit: int) -> None:
    assert rule.violation(limit) is None
    assert f"{limit + 1} {rule.what}, over the limit of {limit}" == rule.violation(limit + 1)


def test_tag_sets_are_checked_by_key_value_and_count() -> None:
    assert c.tag_violations({"Name": "a", "wgmesh-stack": "dev"}) == []
    assert len(c.tag_violations({"aws:x": "ok", "ok": "bad#"})) == 2
    assert c.tag_violations({f"k{i}": "v" for i in range(51)}) == [
        "51 tags on one AWS resource, over the limit of 50"
    ]


def test_label_sets_are_checked_per_cloud() -> None:
    assert c.hcloud_label_violations({"wgmesh-stack": "Dev.1"}) == []
    assert c.gcp_label_violations({"wgmesh-stack": "Dev.1"}) != []  # GCP: lowercase, no dots
    assert c.hcloud_label_violations({"a" * 254 + "/k": "v"}) != []  # prefix over 253
    assert len(c.gcp_label_violations({f"k{i}": "" for i in range(65)})) == 1


def test_network_tags_must_be_unique_and_few() -> None:
    assert c.network_tag_violations(["wgmesh-a", "wgmesh-b"]) == []
    assert "not unique" in c.network_tag_violations(["wgmesh-a", "wgmesh-a"])[0]
    assert "65 network tags" in c.network_tag_violations([f"t{i}" for i in range(65)])[0]


def test_autoname_is_the_logical_name_a_dash_and_seven_hex_characters() -> None:
    assert c.autoname("web-sg", "0123456789abcdef") == "web-sg-0123456"
    assert len(c.autoname("x")) == len("x") + 1 + c.AUTONAME_RANDOM_CHARS


@pytest.mark.parametrize("stack", ["dev", "Prod.eu_1", "a" * 63, "a-b_c.d"])
def test_a_stack_name_a_label_takes_is_kept(stack: str) -> None:
    assert c.label_value(stack) == stack


@pytest.mark.parametrize("stack", ["_dev", "dev.", "-", "_", "a" * 64, "x" * 100, "__a.b__", "a_" * 50])
def test_any_other_stack_name_becomes_a_valid_stable_label(stack: str) -> None:
    value = c.label_value(stack)
    assert value != stack
    assert c.HCLOUD_LABEL_VALUE.violation(value) is None
    assert c.AWS_TAG_VALUE.violation(value) is None
    assert value == c.label_value(stack)  # deterministic: labels never churn between runs
    core = stack.strip("_.-")
    if core:
        assert value.startswith(core[:20])  # still readable


def test_long_stack_names_sharing_a_prefix_get_different_labels() -> None:
    a, b = "p" * 99 + "a", "p" * 99 + "b"
    assert c.label_value(a) != c.label_value(b)


def test_the_longest_spec_name_fits_every_name_the_clouds_derive() -> None:
    assert NAME_RE.fullmatch(LONGEST_NODE)
    for cloud in ("aws", "gcp", "hcloud", "lab"):
        assert c.node_name_problems(LONGEST_NODE, cloud) == []


def test_a_name_three_characters_longer_would_break_the_gcp_route_name() -> None:
    assert c.node_name_problems("n" * 33, "gcp") == []  # the route name is then exactly 63
    (problem,) = c.node_name_problems("n" * 34, "gcp")
    assert "-rt-255-255-255-255-32-" in problem and "over the limit of 63" in problem


@pytest.mark.parametrize(
    ("name", "cloud", "fragment"),
    [
        ("edge-", "hcloud", "Hetzner label value 'edge-' must match"),
        ("db-", "hcloud", "Hetzner label value 'db-' must match"),
    ],
)
def test_node_names_a_cloud_would_refuse(name: str, cloud: str, fragment: str) -> None:
    problems = c.node_name_problems(name, cloud)
    assert len(problems) == 1 and fragment in problems[0], problems
    assert problems[0].startswith(f"{name!r} cannot be used on {cloud}: ")


@pytest.mark.parametrize(
    ("name", "cloud"),
    [
        ("sg-db", "aws"),
        ("sg-db", "gcp"),
        ("sg-db", "hcloud"),
        ("edge-", "aws"),
        ("edge-", "gcp"),
        ("edge-", "lab"),
    ],
)
def test_the_same_names_are_fine_where_no_rule_reaches_them(name: str, cloud: str) -> None:
    assert c.node_name_problems(name, cloud) == []
