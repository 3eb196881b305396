"""The program on purpose-made configs: bad config, oversized user data, key rotation, and the
shapes `synthetic.matrix()` adds (several regions, Debian and Arm images, routed subnets)."""

from __future__ import annotations

import base64
import ipaddress
import json
import re

import pulumi
import pytest
import synthetic_stacks as synthetic
from program_expectations import VM_TYPE, firewall_rules, handed_user_data, key_material, plan_of
from wgmesh_mocks import REPO, ProgramRun, reveal, run_program, stack_config

from components.images import CANONICAL_OWNER, DEBIAN_OWNER
from mesh.errors import ConfigError

GOOD_NODE = {"name": "a", "cloud": "aws", "region": "eu-central-1"}
GOOD_MESH = {"cidr": "10.9.0.0/24"}
GCP_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
GCP_AUTONAME_SUFFIX = 8  # Pulumi appends "-" and 7 random characters


def dev_config() -> dict[str, str]:
    return stack_config(REPO / "stacks" / "Pulumi.dev.yaml")


@pytest.fixture(scope="module")
def matrix() -> ProgramRun:
    run = run_program("matrix", synthetic.matrix())
    assert run.error is None, repr(run.error)
    return run


# ----------------------------------------------------------------------------- bad config


@pytest.mark.parametrize(
    ("config", "key"),
    [
        (synthetic.config({"cidr": "10.0.0.0/33"}, [GOOD_NODE]), "wgmesh:mesh.cidr"),
        (
            synthetic.config(
                GOOD_MESH, [{"name": "g", "cloud": "gcp", "region": "europe-west3", "image": "debian-12"}]
            ),
            "wgmesh:nodes[0].image",
        ),
        (
            synthetic.config(
                GOOD_MESH,
                [
                    {**GOOD_NODE, "subnets": ["10.4.0.0/24"]},
                    {**GOOD_NODE, "name": "b", "subnets": ["10.4.0.0/25"]},
                ],
            ),
            "wgmesh:nodes[1].subnets[0]",
        ),
        ({"wgmesh:mesh": json.dumps(GOOD_MESH)}, "wgmesh:nodes"),
        ({"wgmesh:mesh": "{not json", "wgmesh:nodes": json.dumps([GOOD_NODE])}, "wgmesh:mesh"),
        (
            {**synthetic.config(GOOD_MESH, [GOOD_NODE]), "wgmesh:client": "[]"},
            "wgmesh:client: unknown config key (did you mean 'wgmesh:clients'?)",
        ),
    ],
    ids=["bad-cidr", "debian-on-gcp", "overlapping-subnets", "no-nodes", "not-structured", "misspelled-key"],
)
def test_bad_config_is_a_run_error_and_creates_nothing(config: dict[str, str], key: str) -> None:
    run = run_program("bad", config)
    assert isinstance(run.error, pulumi.RunError), repr(run.error)
    assert isinstance(run.error, ConfigError)
    assert key in str(run.error)
    assert run.resources == []
    assert run.invokes == []


# ----------------------------------------------------------------------------- user data size


def test_aws_user_data_is_gzipped_only_when_over_16_kib() -> None:
    big = run_program("big", synthetic.big_user_data(20))
    small = run_program("dev", dev_config())
    assert big.error is None and small.error is None
    big_raw = base64.b64decode(reveal(handed_user_data(big, "big-aws", "aws")))
    small_raw = base64.b64decode(reveal(handed_user_data(small, "aws-fra", "aws")))
    assert big_raw[:2] == b"\x1f\x8b" and len(big_raw) <= 16384
    assert small_raw.startswith(b"#cloud-config")


@pytest.mark.parametrize(
    ("keys", "node", "limit", "vm_type"),
    [(30, "big-aws", "16384", VM_TYPE["aws"]), (45, "big-hetzner", "32768", VM_TYPE["hcloud"])],
)
def test_user_data_over_the_limit_is_a_one_line_run_error(
    keys: int, node: str, limit: str, vm_type: str
) -> None:
    run = run_program("big", synthetic.big_user_data(keys))
    assert isinstance(run.error, pulumi.RunError), repr(run.error)
    message = str(run.error)
    assert node in message and limit in message and "\n" not in message
    assert "ssh-rsa" not in message and "PrivateKey" not in message
    assert [r for r in run.of_type(vm_type, allow_empty=True) if r.name == node] == []


# ----------------------------------------------------------------------------- key rotation


def _user_data_lines(run: ProgramRun, node: str, cloud: str) -> set[str]:
    text = reveal(handed_user_data(run, node, cloud))
    if cloud == "aws":
        text = base64.b64decode(text).decode()
    return set(text.splitlines())


def test_node_key_epoch_rotates_that_node_only() -> None:
    base_config = dev_config()
    nodes = json.loads(base_config["wgmesh:nodes"])
    nodes[1]["keyEpoch"] = 1  # gcp-fra
    bumped_config = {**base_config, "wgmesh:nodes": json.dumps(nodes)}
    base, bumped = run_program("dev", base_config), run_program("dev", bumped_config)
    assert base.error is None and bumped.error is None
    changed = {
        r.name
        for r in bumped.of_type("random:index/randomBytes:RandomBytes")
        if r.inputs != base.one(r.type, r.name).inputs
    }
    assert changed == {"gcp-fra-key"}  # the keepers Pulumi compares: only this key is replaced
    old_keys = key_material(base, plan_of(base_config))
    new_keys = key_material(bumped, plan_of(bumped_config))
    for node, cloud in (("aws-fra", "aws"), ("hetzner-nbg", "hcloud")):
        diff = _user_data_lines(base, node, cloud) ^ _user_data_lines(bumped, node, cloud)
        # Only gcp-fra's public key and the PSK of the pair with gcp-fra change on the other nodes.
        assert {line.split("=")[0].strip() for line in diff} == {"PublicKey", "PresharedKey"}, node
        assert f"PublicKey = {new_keys.public['gcp-fra']}" in {line.strip() for line in diff}
        assert old_keys.public[node] == new_keys.public[node]


def test_mesh_key_epoch_rotates_every_key() -> None:
    config = dev_config()
    mesh = json.loads(config["wgmesh:mesh"])
    bumped = run_program("dev", {**config, "wgmesh:mesh": json.dumps({**mesh, "keyEpoch": 7})})
    base = run_program("dev", config)
    for r in bumped.of_type("random:index/randomBytes:RandomBytes"):
        if r.name == "wgmesh-hcloud-ssh-seed":  # Hetzner's stack key: never rotates (hcloud.py)
            assert "keepers" not in r.inputs and r.inputs == base.one(r.type, r.name).inputs
            continue
        assert r.inputs["keepers"]["meshKeyEpoch"] == "7"
        assert r.inputs != base.one(r.type, r.name).inputs


# ----------------------------------------------------------------------------- matrix shapes


def test_one_ami_lookup_per_region_image_and_architecture(matrix: ProgramRun) -> None:
    lookups = sorted(
        (
            i.provider.split("::")[-2],
            i.args["owners"][0],
            i.args["filters"][0]["values"][0],
            i.args["filters"][1]["values"][0],
        )
        for i in matrix.invokes
        if i.token == "aws:ec2/getAmi:getAmi"
    )
    assert lookups == [
        (
            "aws-eu-central-1",
            CANONICAL_OWNER,
            "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*",
            "x86_64",
        ),
        ("aws-eu-central-1", DEBIAN_OWNER, "debian-12-arm64-*", "arm64"),
        (
            "aws-us-east-1",
            CANONICAL_OWNER,
            "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*",
            "x86_64",
        ),
    ]
    gcp = [i.args for i in matrix.invokes if i.token == "gcp:compute/getImage:getImage"]
    assert gcp == [{"family": "ubuntu-2404-lts-amd64", "project": "ubuntu-os-cloud"}]


def test_routing_nodes_forward_and_others_do_not(matrix: ProgramRun) -> None:
    assert matrix.one(VM_TYPE["aws"], "a1").inputs["sourceDestCheck"] is False
    assert matrix.one(VM_TYPE["aws"], "a2").inputs["sourceDestCheck"] is True
    assert matrix.one(VM_TYPE["gcp"], "g1").inputs["canIpForward"] is True
    assert matrix.one(VM_TYPE["gcp"], "g2").inputs["canIpForward"] is False
    assert matrix.one(VM_TYPE["gcp"], "g2").inputs["zone"] == "us-central1-b"


def test_routed_subnets_become_the_site_network_with_return_routes(matrix: ProgramRun) -> None:
    assert matrix.one("aws:ec2/vpc:Vpc", "aws-eu-central-1-vpc").inputs["cidrBlock"] == "10.1.0.0/24"
    us = ipaddress.IPv4Network(matrix.one("aws:ec2/vpc:Vpc", "aws-us-east-1-vpc").inputs["cidrBlock"])
    assert us.subnet_of(ipaddress.IPv4Network("10.200.0.0/16"))
    subnets = {
        r.inputs["region"]: r.inputs["ipCidrRange"]
        for r in matrix.of_type("gcp:compute/subnetwork:Subnetwork")
    }
    assert subnets["europe-west3"] == "10.2.0.0/24"
    assert ipaddress.IPv4Network(subnets["us-central1"]).subnet_of(ipaddress.IPv4Network("10.200.0.0/16"))
    g1 = matrix.one(VM_TYPE["gcp"], "g1")
    routes = {
        (r.inputs["destRange"], r.inputs["nextHopInstance"])
        for r in matrix.of_type("gcp:compute/route:Route")
    }
    assert routes == {("10.88.0.0/24", g1.outputs["selfLink"]), ("10.1.0.0/24", g1.outputs["selfLink"])}


def test_no_admin_cidrs_no_ssh_and_no_clients_nothing_open_to_the_world(matrix: ProgramRun) -> None:
    plan = plan_of(synthetic.matrix())
    for node in plan.nodes:
        rules = firewall_rules(matrix, node.name, node.cloud)
        assert {proto for proto, _, _ in rules} == {"udp", "icmp"}, node.name
        (wg,) = [r for r in rules if r[0] == "udp"]
        assert wg[1] == 51999
        assert not {"0.0.0.0/0", "::/0"} & wg[2]


def test_presharedkeys_off_means_no_psk_root_and_no_psk_lines(matrix: ProgramRun) -> None:
    assert [
        r for r in matrix.of_type("random:index/randomBytes:RandomBytes") if r.name.endswith("psk-root")
    ] == []
    text = base64.b64decode(reveal(handed_user_data(matrix, "a1", "aws"))).decode()
    assert "[Peer]" in text and "PresharedKey" not in text


def test_gcp_resource_names_survive_autonaming(matrix: ProgramRun) -> None:
    for run in (matrix, run_program("dev", dev_config())):
        for r in run.resources:
            if r.type.startswith("gcp:compute/"):
                assert GCP_NAME.match(r.name), r.name
                assert len(r.name) + GCP_AUTONAME_SUFFIX <= 63, r.name
