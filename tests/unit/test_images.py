"""Image lookups: one per distinct (image, arch), the arch read from each node's size."""

from __future__ import annotations

from components.images import aws_arch, gcp_arch, image_keys
from mesh.spec import Cloud, NodeSpec


def node(name: str, cloud: Cloud, size: str, image: str = "ubuntu-24.04") -> NodeSpec:
    return NodeSpec(name=name, cloud=cloud, size=size, image=image)


def test_aws_pairs_are_distinct_in_node_order() -> None:
    nodes = [
        node("a", "aws", "t3.micro"),
        node("b", "aws", "t4g.small"),
        node("c", "aws", "t3.large"),
        node("d", "aws", "t3.micro", "debian-12"),
        node("e", "aws", "m7g.large"),
    ]
    assert image_keys(nodes, aws_arch) == [
        ("ubuntu-24.04", "amd64"),
        ("ubuntu-24.04", "arm64"),
        ("debian-12", "amd64"),
    ]


def test_gcp_pairs_use_the_gcp_arch_of_each_machine_type() -> None:
    nodes = [
        node("a", "gcp", "t2a-standard-1"),
        node("b", "gcp", "e2-small"),
        node("c", "gcp", "c4a-highcpu-2"),
    ]
    assert image_keys(nodes, gcp_arch) == [("ubuntu-24.04", "arm64"), ("ubuntu-24.04", "amd64")]
    assert image_keys([], gcp_arch) == []
