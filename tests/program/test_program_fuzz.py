"""The real program on fuzzed stack files, under the mocks: a refusal is a one-line-per-problem
pulumi.RunError raised before any resource or invoke, with exactly the problems `make render`
reports for the same file; an accepted file never ends in anything but a RunError.

Each example runs the whole program, so the example count is kept small (about 1 s each).
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pulumi
import pytest
import synthetic_stacks as synthetic
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wgmesh_mocks import REPO, run_program, stack_config

from mesh.errors import ConfigError
from mesh.plan import build_plan
from mesh.pulumi_yaml import StackFileError
from mesh.spec import parse
from mesh.stackfile import load_config

NODES: list[dict[str, Any]] = [
    {"name": "aws-fra", "cloud": "aws", "region": "eu-central-1"},
    {"name": "gcp-fra", "cloud": "gcp", "region": "europe-west3"},
    {"name": "hz", "cloud": "hcloud", "region": "nbg1"},
    {"name": "lab-a", "cloud": "lab", "publicIp": "198.51.100.1"},
]
TOKENS = ["off", "yes", "017", "0o17", "1_000", "51820.0", ".inf", "~", "1e3", "08", "true"]
NETWORKS = [
    "10.0.0.0/8", "10.77.0.0/24", "169.254.169.0/24", "127.0.0.0/8", "224.0.0.0/24", "0.0.0.0/0",
    "172.16.0.0/12", "192.168.0.0/16", "198.51.100.0/24", "fe80::/64", "fd77::/64", "ff00::/8",
]  # fmt: skip


@st.composite
def stack_texts(draw: st.DrawFn) -> str:
    """A stack file with a few nodes and fuzzed values, some written as bare yaml.v3 tokens."""
    nodes: list[dict[str, Any]] = [
        dict(n) for n in draw(st.lists(st.sampled_from(NODES), min_size=1, max_size=4, unique_by=str))
    ]
    mesh: dict[str, object] = {"cidr": draw(st.sampled_from(NETWORKS))}
    if draw(st.booleans()):
        mesh["cidr6"] = draw(st.sampled_from(NETWORKS))
    for n in nodes:
        if draw(st.integers(0, 3)) == 0:
            n["subnets"] = draw(st.lists(st.sampled_from(NETWORKS), max_size=2))
        if draw(st.integers(0, 4)) == 0:
            n[draw(st.sampled_from(["underlayMtu", "name", "hub", "bogus"]))] = draw(
                st.sampled_from([1300, "x", True, None, 9000])
            )
    lines = ["config:", f"  wgmesh:mesh: {json.dumps(mesh)}", f"  wgmesh:nodes: {json.dumps(nodes)}"]
    if draw(st.booleans()):
        key = draw(st.sampled_from(["port", "keepalive", "presharedKeys", "topology", "keyEpoch"]))
        lines[1] = lines[1][:-1] + f', "{key}": {draw(st.sampled_from(TOKENS))}}}'
    if draw(st.integers(0, 4)) == 0:
        lines.append(f"  wgmesh:{draw(st.sampled_from(['client', 'clients', 'mesh']))}: {{}}")
    return "\n".join(lines) + "\n"


@given(stack_texts())
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_fuzzed_stack_files_under_the_program(text: str) -> None:
    path = Path(REPO / "build" / "fuzz" / "Pulumi.fuzz.yaml")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    try:
        config = stack_config(path)
    except (yaml.YAMLError, StackFileError):
        return  # the CLI refuses the file: the program never runs (tests/unit covers the message)
    try:
        offline: ConfigError | None = None
        build_plan(parse(load_config(path)))
    except ConfigError as e:
        offline = e
    run = run_program("fuzz", config)
    if offline is not None:
        assert isinstance(run.error, pulumi.RunError) and isinstance(run.error, ConfigError), repr(run.error)
        assert run.error.problems == offline.problems  # make render says exactly what preview says
        assert run.resources == [] and run.invokes == []
        assert all(line.startswith(("  wgmesh:", "wgmesh:")) or "problems" in line
                   for line in str(run.error).splitlines())  # fmt: skip
    else:
        assert run.error is None or isinstance(run.error, pulumi.RunError), repr(run.error)


@pytest.mark.parametrize("stack", sorted(p.name for p in (REPO / "stacks").glob("Pulumi.*.yaml")))
def test_offline_tools_and_program_tests_read_every_stack_alike(stack: str) -> None:
    """`make render` (load_config) and the program tests (stack_config) see the same values."""
    path = REPO / "stacks" / stack
    strings = stack_config(path)
    sections = load_config(path)
    for name, value in sections.items():
        key = f"wgmesh:{name}"
        assert (json.loads(strings[key]) if key in strings else None) == value
    assert sections["nodes"]


def test_a_slash_8_overlay_deploys_with_site_networks_outside_it() -> None:
    """`cidr: 10.0.0.0/8` used to end in a traceback from the site allocator after resources."""
    run = run_program("wide", synthetic.config({"cidr": "10.0.0.0/8"}, NODES[:3]))
    assert run.error is None, repr(run.error)
    overlay = ipaddress.IPv4Network("10.0.0.0/8")
    vpcs = [ipaddress.IPv4Network(r.inputs["cidrBlock"]) for r in run.of_type("aws:ec2/vpc:Vpc")]
    subnets = [
        ipaddress.IPv4Network(r.inputs["ipCidrRange"])
        for r in run.of_type("gcp:compute/subnetwork:Subnetwork")
    ]
    assert vpcs and subnets
    assert not any(n.overlaps(overlay) for n in vpcs + subnets)


def test_no_free_site_pool_is_refused_before_any_resource() -> None:
    nodes: list[dict[str, Any]] = [*NODES[:2], {**NODES[3], "subnets": ["172.16.0.0/12", "192.168.0.0/16"]}]
    run = run_program("full", synthetic.config({"cidr": "10.0.0.0/8"}, nodes))
    assert isinstance(run.error, pulumi.RunError) and isinstance(run.error, ConfigError), repr(run.error)
    assert str(run.error).startswith("wgmesh:mesh.cidr: 10.0.0.0/8 leaves no free /24")
    assert "\n" not in str(run.error)
    assert run.resources == [] and run.invokes == []


def test_a_cloud_endpoint_inside_a_routed_subnet_is_a_one_line_run_error() -> None:
    """The mocks hand out public IPs from 100.64.0.0/10: routing it behind a node is refused at render."""
    nodes: list[dict[str, Any]] = [NODES[0], NODES[2], {**NODES[3], "subnets": ["100.64.0.0/10"]}]
    run = run_program("loop", synthetic.config({"cidr": "10.77.0.0/24"}, nodes))
    assert isinstance(run.error, pulumi.RunError), repr(run.error)
    message = str(run.error)
    assert "endpoint 100." in message and "is inside 100.64.0.0/10, AllowedIPs of peer lab-a" in message
    assert "\n" not in message
    assert "PrivateKey" not in message
