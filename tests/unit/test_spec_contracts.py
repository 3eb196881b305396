"""Node names the spec's pattern allows but a cloud would refuse: one keyed line at parse time,
before any resource, instead of a failure half-way through `pulumi up`."""

from __future__ import annotations

from typing import Any

import pytest

from mesh.errors import ConfigError
from mesh.spec import parse

REGION = {"aws": "eu-central-1", "gcp": "europe-west3", "hcloud": "nbg1"}


def config(name: str, cloud: str) -> dict[str, Any]:
    return {
        "mesh": {"cidr": "10.77.0.0/24"},
        "nodes": [
            {"name": "peer", "cloud": "lab", "publicIp": "198.51.100.1"},
            {"name": name, "cloud": cloud, "region": REGION[cloud]},
        ],
    }


@pytest.mark.parametrize(
    ("name", "cloud", "rule"),
    [
        ("edge-", "hcloud", "Hetzner label value 'edge-' must match"),
        ("db-", "hcloud", "Hetzner label value 'db-' must match"),
    ],
)
def test_a_name_a_cloud_refuses_is_one_keyed_line(name: str, cloud: str, rule: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(config(name, cloud))
    (problem,) = info.value.problems
    assert problem.key == "wgmesh:nodes[1].name"
    assert problem.message.startswith(f"{name!r} cannot be used on {cloud}: {rule}")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("name", "cloud"),
    [
        ("edge-", "aws"),
        ("edge-", "gcp"),
        ("sg-db", "aws"),
        ("sg-db", "gcp"),
        ("sg-db", "hcloud"),
        ("n" * 31, "gcp"),
    ],
)
def test_names_no_cloud_rule_reaches_are_accepted(name: str, cloud: str) -> None:
    spec = parse(config(name, cloud))
    assert spec.nodes[1].name == name


def test_every_bad_name_is_reported_at_once() -> None:
    cfg = config("a-", "hcloud")
    cfg["nodes"].append({"name": "b-", "cloud": "hcloud", "region": "fsn1"})
    with pytest.raises(ConfigError) as info:
        parse(cfg)
    assert [p.key for p in info.value.problems] == ["wgmesh:nodes[1].name", "wgmesh:nodes[2].name"]
