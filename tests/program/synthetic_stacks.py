"""Stack configs made in code: shapes the example stacks do not cover, and the bench's big mesh.

Each function returns config the way Pulumi hands it to the program: fully qualified keys,
JSON values.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

ADMIN = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINmmuPryri6glS1QlhaDJjKjzx04JfygjBfH72YlFlq/ admin@example"


def config(
    mesh: dict[str, Any], nodes: list[dict[str, Any]], clients: list[dict[str, Any]] | None = None
) -> dict[str, str]:
    out = {"wgmesh:mesh": json.dumps(mesh), "wgmesh:nodes": json.dumps(nodes)}
    if clients:
        out["wgmesh:clients"] = json.dumps(clients)
    return out


def long_ssh_key(i: int) -> str:
    """A syntactically valid (not usable) ssh-rsa 4096 public key line, ~730 bytes."""
    blob = b"".join(hashlib.sha256(f"key {i} {j}".encode()).digest() for j in range(17))
    return f"ssh-rsa {base64.b64encode(blob).decode()} user{i}@example"


def matrix() -> dict[str, str]:
    """Two AWS regions (one with two nodes, Debian on Arm), two GCP regions (one routing a subnet),
    Hetzner on Arm, no adminCidrs (no SSH rule), no clients (nothing open to the world), no PSKs."""
    return config(
        {"cidr": "10.88.0.0/24", "port": 51999, "presharedKeys": False, "sshPublicKeys": [ADMIN]},
        [
            {"name": "a1", "cloud": "aws", "region": "eu-central-1", "subnets": ["10.1.0.0/24"]},
            {
                "name": "a2",
                "cloud": "aws",
                "region": "eu-central-1",
                "size": "t4g.small",
                "image": "debian-12",
            },
            {"name": "a3", "cloud": "aws", "region": "us-east-1", "image": "ubuntu-22.04"},
            {"name": "g1", "cloud": "gcp", "region": "europe-west3", "subnets": ["10.2.0.0/24"]},
            {"name": "g2", "cloud": "gcp", "region": "us-central1", "zone": "us-central1-b"},
            {"name": "h1", "cloud": "hcloud", "region": "fsn1", "size": "cax11", "image": "debian-12"},
        ],
    )


def big_user_data(keys: int) -> dict[str, str]:
    """One AWS and one Hetzner node whose user data grows with `keys` long admin SSH keys."""
    return config(
        {
            "cidr": "10.66.0.0/24",
            "adminCidrs": ["192.0.2.0/24"],
            "sshPublicKeys": [long_ssh_key(i) for i in range(keys)],
        },
        [
            {"name": "big-aws", "cloud": "aws", "region": "eu-west-1"},
            {"name": "big-hetzner", "cloud": "hcloud", "region": "hel1"},
        ],
    )


AWS_REGIONS = ("eu-central-1", "us-east-1", "eu-west-1")
GCP_REGIONS = ("europe-west3", "us-central1")
HCLOUD_LOCATIONS = ("nbg1", "fsn1", "hel1")


def raised_quotas(n: int) -> dict[str, Any]:
    """A `wgmesh:quotas` section as an account raised for an n-node three_clouds mesh would declare:
    every count quota at n per region (AWS, GCP) or account (Hetzner), rules per group at 1000
    (AWS's ceiling for rules x groups per interface) and Hetzner firewalls at 3n."""
    per_region = {q: n for q in ("elasticIps", "securityGroups", "standardVcpus")}
    return {
        "aws": {r: {**per_region, "rulesPerSecurityGroup": 1000} for r in AWS_REGIONS},
        "gcp": {
            "firewalls": 10 * n,
            "regions": {r: {"staticAddresses": n, "inUseAddresses": n, "cpus": 2 * n} for r in GCP_REGIONS},
        },
        "hcloud": {"servers": n, "primaryIps": 2 * n, "firewalls": 3 * n},
    }


def three_clouds(
    n: int,
    clients: int = 2,
    *,
    gcp_hubs: bool = False,
    clouds: tuple[str, ...] = ("aws", "gcp", "hcloud"),
    quotas: dict[str, Any] | None = None,
) -> dict[str, str]:
    """n nodes spread round-robin over AWS, GCP and Hetzner regions, with fixed overlay addresses.

    A full mesh with preshared keys (the default, and the worst case for size and time);
    `quotas`: a `wgmesh:quotas` section (see `raised_quotas`); without it the clouds' defaults cap
    the mesh and preview refuses. `gcp_hubs`: `topology: hub` with every GCP node a hub (GCP
    takes 256 KB of user data), the shape a mesh too big for AWS's 16 KB takes.
    `clouds=("gcp",)`: the largest full mesh that still deploys (only GCP's user data takes
    every peer of a 400-node mesh).
    """
    nodes: list[dict[str, Any]] = []
    for i in range(n):
        cloud = clouds[i % len(clouds)]
        regions = {"aws": AWS_REGIONS, "gcp": GCP_REGIONS, "hcloud": HCLOUD_LOCATIONS}[cloud]
        nodes.append(
            {
                "name": f"n{i}-{cloud}",
                "cloud": cloud,
                "region": regions[(i // len(clouds)) % len(regions)],
                "address": f"10.96.{i // 250}.{i % 250 + 1}",
            }
        )
        if gcp_hubs and cloud == "gcp":
            nodes[-1]["hub"] = True
    members = [{"name": f"client{j}", "address": f"10.96.255.{j + 1}"} for j in range(clients)]
    mesh: dict[str, Any] = {
        "cidr": "10.96.0.0/16",
        "adminCidrs": ["203.0.113.0/24"],
        "sshPublicKeys": [ADMIN],
    }
    if gcp_hubs:
        mesh["topology"] = "hub"
    out = config(mesh, nodes, members)
    if quotas is not None:
        out["wgmesh:quotas"] = json.dumps(quotas)
    return out
