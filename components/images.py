"""Which OS image each cloud boots for an `image:` name, and the CPU architecture of a size.

Pure data so the program tests can check the lookups without calling a cloud.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from mesh.spec import NodeSpec

Arch = Literal["amd64", "arm64"]

CANONICAL_OWNER = "099720109477"
DEBIAN_OWNER = "136693071363"
GCP_UBUNTU_PROJECT = "ubuntu-os-cloud"

# AWS Graviton families carry a `g` after the generation digit: t4g, m7g, c7gn, r8gd, ...
_AWS_ARM = re.compile(r"^[a-z]+\d+g[a-z]*\.")
# GCP Arm machine series: t2a, c4a, n4a (Axion).
_GCP_ARM = re.compile(r"^(t2a|c4a|n4a)-")


@dataclass(frozen=True)
class AmiQuery:
    """An `aws.ec2.get_ami` lookup: newest image of this owner whose name matches the pattern."""

    owner: str
    name_pattern: str
    architecture: str  # the EC2 `architecture` filter value


def image_keys(nodes: Iterable[NodeSpec], arch: Callable[[str], Arch]) -> list[tuple[str, Arch]]:
    """Distinct (image, arch) pairs in node order, `arch` from each node's size (aws_arch,
    gcp_arch): one image lookup per pair (per region on AWS), however many nodes share it."""
    return list(dict.fromkeys((n.image, arch(n.size)) for n in nodes))


def aws_arch(instance_type: str) -> Arch:
    return "arm64" if _AWS_ARM.match(instance_type) else "amd64"


def gcp_arch(machine_type: str) -> Arch:
    return "arm64" if _GCP_ARM.match(machine_type) else "amd64"


def ami_query(image: str, arch: Arch) -> AmiQuery:
    ec2_arch = "x86_64" if arch == "amd64" else "arm64"
    patterns = {
        "ubuntu-24.04": (CANONICAL_OWNER, f"ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-{arch}-server-*"),
        "ubuntu-22.04": (CANONICAL_OWNER, f"ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-{arch}-server-*"),
        "debian-12": (DEBIAN_OWNER, f"debian-12-{arch}-*"),
    }
    owner, pattern = patterns[image]
    return AmiQuery(owner=owner, name_pattern=pattern, architecture=ec2_arch)


def gcp_family(image: str, arch: Arch) -> str:
    """The ubuntu-os-cloud image family (GCP's Debian images have no cloud-init: spec rejects them)."""
    families = {"ubuntu-24.04": "ubuntu-2404-lts", "ubuntu-22.04": "ubuntu-2204-lts"}
    base = families[image]
    if image == "ubuntu-24.04" or arch == "arm64":
        return f"{base}-{arch}"
    return base  # 22.04's x86 family has no suffix


def hcloud_image(image: str) -> str:
    """Hetzner names its images like the config does; the server type picks the architecture."""
    return image
