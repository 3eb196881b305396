"""The topology diagrams: edges are exactly the peerings, DOT is valid Graphviz, the tool writes SVG/PNG."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mesh.diagram import dot, mermaid, topology
from mesh.plan import build_plan
from mesh.plan_types import MeshPlan
from mesh.spec import parse
from mesh.stackfile import load_spec
from tools.diagram import main

# Graphviz is in scripts/install-debs: under CI=true a missing `dot` fails instead of skipping.
needs_dot = pytest.mark.skipif(
    shutil.which("dot") is None and os.environ.get("CI", "").lower() != "true",
    reason="Graphviz `dot` is not installed (scripts/install-debs installs it)",
)


def hub_plan() -> MeshPlan:
    return build_plan(
        parse(
            {
                "mesh": {"cidr": "10.77.0.0/24", "topology": "hub"},
                "nodes": [
                    {"name": "hub", "cloud": "aws", "region": "eu-central-1", "hub": True, "gateway": True},
                    {"name": "s1", "cloud": "hcloud", "region": "nbg1", "subnets": ["10.9.0.0/24"]},
                    {"name": "s2", "cloud": "lab", "publicIp": "198.51.100.2"},
                ],
                "clients": [{"name": "phone", "fullTunnel": True}],
            }
        )
    )


def test_edges_are_the_peerings_once_each() -> None:
    plan = hub_plan()
    links = {(a, b) for a, b, _ in topology(plan).links}
    # Hub topology: spokes and the client peer with the hub only.
    assert links == {("n_hub", "n_s1"), ("n_hub", "n_s2"), ("n_hub", "c_phone")}
    pairs = {frozenset((i.name, p.name)) for i in (n.iface for n in plan.nodes) for p in i.peers}
    assert len(links) == len(pairs - {frozenset(("hub", "phone"))}) + 1


def test_full_mesh_of_the_dev_stack() -> None:
    plan = build_plan(load_spec("dev"))
    text = mermaid(plan)
    assert text.startswith("flowchart LR\n")
    solid = re.findall(r"^  (\w+) --- (\w+)$", text, re.M)
    dotted = re.findall(r"^  (\w+) -\.- (\w+)$", text, re.M)
    assert len(solid) == 3  # 3 nodes: every pair once
    assert sorted(b for _, b in dotted) == ["c_laptop"] * 3
    assert "  n_aws_fra -.->|routes| s_10_0_4_0_24" in text
    assert 'n_aws_fra["aws-fra<br/>aws eu-central-1<br/>10.77.0.1"]' in text
    assert text.count("subgraph ") == text.count("\n  end\n") == 3


def test_roles_and_labels() -> None:
    text = mermaid(hub_plan())
    assert "hub, gateway" in text and "full tunnel" in text and 'subgraph lab["Local lab"]' in text
    assert "s2<br/>lab 198.51.100.2" in text


@needs_dot
def test_dot_is_valid_graphviz() -> None:
    for plan in (hub_plan(), build_plan(load_spec("dev"))):
        result = subprocess.run(
            ["dot", "-Tcanon"], input=dot(plan), text=True, capture_output=True, check=False
        )
        assert result.returncode == 0, result.stderr
        assert "n_hub -- n_s1" in dot(hub_plan())


@needs_dot
def test_tool_writes_svg_and_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--stack", "dev", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "mesh.png").read_bytes().startswith(b"\x89PNG\r\n")
    assert "<svg" in (tmp_path / "mesh.svg").read_text()
    assert (tmp_path / "mesh.mmd").read_text() == mermaid(build_plan(load_spec("dev")))
    assert "mesh.png" in capsys.readouterr().out


def test_tool_reports_a_bad_stack(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--stack", str(tmp_path / "Pulumi.none.yaml"), "--out", str(tmp_path)]) == 2
    assert "no such stack file" in capsys.readouterr().err
