"""The policy pack's rules, offline: plain functions over the inputs the engine would send."""

from __future__ import annotations

from typing import Any

import pytest

from policy.rules import (
    AWS_INSTANCE,
    AWS_SG,
    AWS_SG_INGRESS,
    AWS_SG_RULE,
    GCP_FIREWALL,
    GCP_INSTANCE,
    HCLOUD_FIREWALL,
    HCLOUD_SERVER,
    ROAMING_MARKER,
    SECRET_SIG,
    SIG_KEY,
    UNKNOWN_SENTINELS,
    imdsv2_required,
    no_ssh_from_world,
    root_volume_encrypted,
    user_data_secret,
    violations,
    wireguard_world_only_for_roaming,
)

UNKNOWN_STRING = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


def secret(value: Any) -> dict[str, Any]:
    return {SIG_KEY: SECRET_SIG, "value": value}


def sg(*ingress: dict[str, Any], tags: dict[str, str] | None = None) -> dict[str, Any]:
    return {"ingress": list(ingress), "tags": tags or {}}


def aws_rule(
    protocol: str, lo: int, hi: int, v4: list[str] | None = None, v6: list[str] | None = None
) -> dict[str, Any]:
    return {
        "protocol": protocol,
        "fromPort": lo,
        "toPort": hi,
        "cidrBlocks": v4 or [],
        "ipv6CidrBlocks": v6 or [],
    }


def test_unknown_sentinels_match_pulumi_policy() -> None:
    from pulumi_policy import proxy

    names = [n for n in dir(proxy) if n.startswith("UNKNOWN_") and n.endswith("_VALUE")]
    assert {getattr(proxy, n) for n in names} == UNKNOWN_SENTINELS


# ----------------------------------------------------------------------------- SSH


@pytest.mark.parametrize(
    "rule",
    [
        aws_rule("tcp", 22, 22, v4=["0.0.0.0/0"]),
        aws_rule("tcp", 22, 22, v6=["::/0"]),
        aws_rule("6", 0, 1024, v4=["0.0.0.0/0"]),
        aws_rule("-1", 0, 0, v4=["0.0.0.0/0"]),
        aws_rule("tcp", 20, 30, v4=["10.0.0.0/8", "0.0.0.0/0"]),
    ],
)
def test_aws_security_group_ssh_from_world_is_a_violation(rule: dict[str, Any]) -> None:
    found = no_ssh_from_world(AWS_SG, sg(rule))
    assert len(found) == 1
    assert "SSH open to the world" in found[0]


@pytest.mark.parametrize(
    "rule",
    [
        aws_rule("tcp", 22, 22, v4=["203.0.113.0/24"]),
        aws_rule("udp", 22, 22, v4=["0.0.0.0/0"]),
        aws_rule("tcp", 80, 443, v4=["0.0.0.0/0"]),
        aws_rule("icmp", 3, 4, v4=["0.0.0.0/0"]),
    ],
)
def test_aws_security_group_ssh_from_admins_or_other_ports_is_fine(rule: dict[str, Any]) -> None:
    assert no_ssh_from_world(AWS_SG, sg(rule)) == []


def test_standalone_aws_rules_are_checked_too() -> None:
    rule = {"type": "ingress", "protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"]}
    assert no_ssh_from_world(AWS_SG_RULE, rule)
    assert no_ssh_from_world(AWS_SG_RULE, {**rule, "type": "egress"}) == []
    ingress = {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "cidrIpv6": "::/0"}
    assert no_ssh_from_world(AWS_SG_INGRESS, ingress)
    assert no_ssh_from_world(AWS_SG_INGRESS, {**ingress, "cidrIpv6": "2001:db8::/32"}) == []


@pytest.mark.parametrize(
    ("allows", "sources", "bad"),
    [
        ([{"protocol": "tcp", "ports": ["22"]}], ["0.0.0.0/0"], True),
        ([{"protocol": "tcp", "ports": ["20-30"]}], ["::/0"], True),
        ([{"protocol": "tcp"}], ["0.0.0.0/0"], True),  # no ports: every port
        ([{"protocol": "all"}], ["0.0.0.0/0"], True),
        ([{"protocol": "tcp", "ports": ["22"]}], [], True),  # no sources: 0.0.0.0/0 on GCP
        ([{"protocol": "tcp", "ports": ["22"]}], ["203.0.113.0/24"], False),
        ([{"protocol": "tcp", "ports": ["443"]}], ["0.0.0.0/0"], False),
        ([{"protocol": "udp", "ports": ["22"]}], ["0.0.0.0/0"], False),
    ],
)
def test_gcp_firewall_ssh(allows: list[dict[str, Any]], sources: list[str], bad: bool) -> None:
    props = {"direction": "INGRESS", "allows": allows, "sourceRanges": sources}
    assert bool(no_ssh_from_world(GCP_FIREWALL, props)) is bad


def test_gcp_egress_and_disabled_firewalls_are_not_ingress() -> None:
    props = {"allows": [{"protocol": "tcp", "ports": ["22"]}], "sourceRanges": ["0.0.0.0/0"]}
    assert no_ssh_from_world(GCP_FIREWALL, {**props, "direction": "EGRESS"}) == []
    assert no_ssh_from_world(GCP_FIREWALL, {**props, "disabled": True}) == []
    assert no_ssh_from_world(GCP_FIREWALL, props)  # direction defaults to INGRESS


@pytest.mark.parametrize(
    ("port", "sources", "bad"),
    [
        ("22", ["0.0.0.0/0", "::/0"], True),
        ("any", ["::/0"], True),
        ("1-1024", ["0.0.0.0/0"], True),
        ("22", ["203.0.113.0/24"], False),
        ("2222", ["0.0.0.0/0"], False),
    ],
)
def test_hcloud_firewall_ssh(port: str, sources: list[str], bad: bool) -> None:
    props = {"rules": [{"direction": "in", "protocol": "tcp", "port": port, "sourceIps": sources}]}
    assert bool(no_ssh_from_world(HCLOUD_FIREWALL, props)) is bad


def test_secret_wrapped_rules_are_still_read() -> None:
    props = secret({"ingress": [aws_rule("tcp", 22, 22, v4=["0.0.0.0/0"])]})
    assert no_ssh_from_world(AWS_SG, {"ingress": props["value"]["ingress"]})
    assert no_ssh_from_world(AWS_SG, {"ingress": [secret(aws_rule("tcp", 22, 22, v4=["0.0.0.0/0"]))]})


def test_unknown_sources_are_not_judged() -> None:
    assert no_ssh_from_world(AWS_SG, sg(aws_rule("tcp", 22, 22, v4=[UNKNOWN_STRING]))) == []


# ----------------------------------------------------------------------------- WireGuard


def test_wireguard_world_open_needs_the_roaming_marker_on_every_cloud() -> None:
    rule = aws_rule("udp", 51820, 51820, v4=["0.0.0.0/0"], v6=["::/0"])
    assert len(wireguard_world_only_for_roaming(AWS_SG, sg(rule))) == 1
    assert wireguard_world_only_for_roaming(AWS_SG, sg(rule, tags={ROAMING_MARKER: "true"})) == []

    gcp = {"allows": [{"protocol": "udp", "ports": ["51820"]}], "sourceRanges": ["0.0.0.0/0"]}
    assert wireguard_world_only_for_roaming(GCP_FIREWALL, {**gcp, "description": "WireGuard"})
    assert (
        wireguard_world_only_for_roaming(GCP_FIREWALL, {**gcp, "description": f"x [{ROAMING_MARKER}]"}) == []
    )

    hc = {"rules": [{"direction": "in", "protocol": "udp", "port": "51820", "sourceIps": ["::/0"]}]}
    assert wireguard_world_only_for_roaming(HCLOUD_FIREWALL, hc)
    assert wireguard_world_only_for_roaming(HCLOUD_FIREWALL, {**hc, "labels": {ROAMING_MARKER: "true"}}) == []


def test_wireguard_from_peers_only_is_fine_and_port_is_configurable() -> None:
    peers = aws_rule("udp", 51820, 51820, v4=["198.51.100.7/32", "192.0.2.9/32"])
    assert wireguard_world_only_for_roaming(AWS_SG, sg(peers)) == []
    world_other_port = aws_rule("udp", 51821, 51821, v4=["0.0.0.0/0"])
    assert wireguard_world_only_for_roaming(AWS_SG, sg(world_other_port)) == []
    assert wireguard_world_only_for_roaming(AWS_SG, sg(world_other_port), port=51821)


def test_shared_firewall_shapes() -> None:
    """The program's shared objects: a class group of 60 peers, the base group that also serves
    roaming clients, GCP's per-family roaming rule and Hetzner's shared roaming firewall."""
    peers = aws_rule("udp", 51820, 51820, v4=[f"198.51.100.{i}/32" for i in range(60)])
    assert violations(AWS_SG, {**sg(peers), "egress": []}) == []
    ssh = aws_rule("tcp", 22, 22, v4=["203.0.113.0/24"])
    icmp = aws_rule("icmp", 3, 4, v4=["0.0.0.0/0"])
    world = aws_rule("udp", 51820, 51820, v4=["0.0.0.0/0"], v6=["::/0"])
    assert violations(AWS_SG, sg(ssh, icmp, world, tags={ROAMING_MARKER: "true"})) == []
    assert len(violations(AWS_SG, sg(ssh, icmp, world))) == 1  # the same group without the marker
    assert (
        len(
            violations(
                AWS_SG, sg(aws_rule("tcp", 22, 22, v4=["0.0.0.0/0"]), world, tags={ROAMING_MARKER: "true"})
            )
        )
        == 1
    )

    gcp6 = {
        "allows": [{"protocol": "udp", "ports": ["51820"]}],
        "sourceRanges": ["::/0"],
        "targetTags": ["wgmesh-wg-roaming"],
    }
    assert wireguard_world_only_for_roaming(
        GCP_FIREWALL, {**gcp6, "description": "WireGuard from roaming clients"}
    )
    marked = {**gcp6, "description": f"WireGuard from roaming clients [{ROAMING_MARKER}]"}
    assert violations(GCP_FIREWALL, marked) == []

    rule = {"direction": "in", "protocol": "udp", "port": "51820", "sourceIps": ["0.0.0.0/0", "::/0"]}
    assert violations(HCLOUD_FIREWALL, {"rules": [rule], "labels": {ROAMING_MARKER: "true"}}) == []
    assert violations(HCLOUD_FIREWALL, {"rules": [rule], "labels": {"wgmesh-mesh": "wgmesh"}})


# ----------------------------------------------------------------------------- instances


def test_imdsv2_is_required_on_instances() -> None:
    assert imdsv2_required(AWS_INSTANCE, {"metadataOptions": {"httpTokens": "required"}}) == []
    assert imdsv2_required(AWS_INSTANCE, {"metadataOptions": {"httpTokens": "optional"}})
    assert imdsv2_required(AWS_INSTANCE, {})
    assert imdsv2_required(AWS_INSTANCE, {"metadataOptions": {"httpTokens": UNKNOWN_STRING}}) == []
    assert imdsv2_required(GCP_INSTANCE, {}) == []


def test_root_volume_must_be_encrypted() -> None:
    assert root_volume_encrypted(AWS_INSTANCE, {"rootBlockDevice": {"encrypted": True}}) == []
    assert root_volume_encrypted(AWS_INSTANCE, {"rootBlockDevice": {"encrypted": False}})
    assert root_volume_encrypted(AWS_INSTANCE, {})


@pytest.mark.parametrize(
    ("typ", "props", "bad"),
    [
        (AWS_INSTANCE, {"userDataBase64": secret("I2Nsb3VkLWNvbmZpZwo=")}, False),
        (AWS_INSTANCE, {"userDataBase64": "I2Nsb3VkLWNvbmZpZwo="}, True),
        (AWS_INSTANCE, {"userData": "#cloud-config\n"}, True),
        (AWS_INSTANCE, {}, False),
        (HCLOUD_SERVER, {"userData": secret("#cloud-config\n")}, False),
        (HCLOUD_SERVER, {"userData": "#cloud-config\n"}, True),
        (GCP_INSTANCE, {"metadata": secret({"user-data": "#cloud-config\n"})}, False),
        (GCP_INSTANCE, {"metadata": {"user-data": secret("#cloud-config\n"), "x": "y"}}, False),
        (GCP_INSTANCE, {"metadata": {"user-data": "#cloud-config\n"}}, True),
        (GCP_INSTANCE, {"metadataStartupScript": "echo hi"}, True),
        (GCP_INSTANCE, {"metadata": {"user-data": UNKNOWN_STRING}}, False),
    ],
)
def test_user_data_must_be_secret(typ: str, props: dict[str, Any], bad: bool) -> None:
    found = user_data_secret(typ, props)
    assert bool(found) is bad
    for message in found:
        assert "#cloud-config" not in message  # never echo the content


def test_violations_prefixes_rule_names() -> None:
    found = violations(AWS_INSTANCE, {"userData": "x", "metadataOptions": {"httpTokens": "optional"}})
    assert sorted(m.split(":")[0] for m in found) == [
        "wgmesh-imdsv2-required",
        "wgmesh-root-volume-encrypted",
        "wgmesh-user-data-secret",
    ]
