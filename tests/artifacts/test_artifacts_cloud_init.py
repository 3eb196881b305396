"""Every rendered user data passes the real `cloud-init schema`; the gate itself rejects bad docs."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from cloudinit.render import node_user_data_from_conf
from mesh.plan import build_plan
from mesh.spec import parse

from .artifact_helpers import Rendered, need_tool, run

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINmmuPryri6glS1QlhaDJjKjzx04JfygjBfH72YlFlq/ admin"


def schema(path: Path) -> tuple[int, str]:
    """Exit code is the signal (never --annotate's output as pass/fail)."""
    result = run([need_tool("cloud-init"), "schema", "--config-file", str(path)])
    return result.returncode, result.stdout + result.stderr


def test_every_user_data_passes_cloud_init_schema(rendered: Rendered) -> None:
    names = [n.name for n in rendered.plan.nodes]
    with ThreadPoolExecutor() as pool:  # each run is ~1 s of cloud-init start-up
        results = dict(zip(names, pool.map(schema, map(rendered.user_data_path, names)), strict=True))
    assert {name: output for name, (code, output) in results.items() if code != 0} == {}
    assert len(results) == len(rendered.plan.nodes) > 0


def first_node(rendered_stacks: dict[str, Rendered]) -> tuple[Rendered, str]:
    r = rendered_stacks["dev"]
    return r, r.plan.nodes[0].name


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_gate_rejects_unquoted_permissions(rendered_stacks: dict[str, Rendered], tmp_path: Path) -> None:
    r, node = first_node(rendered_stacks)
    text = r.user_data_path(node).read_text()
    assert "permissions: '0600'" in text
    broken = text.replace("permissions: '0600'", "permissions: 0600")
    assert yaml.safe_load(broken)["write_files"][0]["permissions"] == 384  # YAML reads an octal int
    assert schema(write(tmp_path / "ud", text))[0] == 0
    code, output = schema(write(tmp_path / "ud-broken", broken))
    assert code != 0
    assert "is not of type 'string'" in output


def test_gate_rejects_wrong_types_and_a_missing_header(
    rendered_stacks: dict[str, Rendered], tmp_path: Path
) -> None:
    r, node = first_node(rendered_stacks)
    doc: dict[str, Any] = r.user_data(node)
    wrong_runcmd = {**doc, "runcmd": {"start": "wg-quick up wg0"}}
    wrong_hostname = {**doc, "hostname": [node]}
    for i, bad in enumerate((wrong_runcmd, wrong_hostname)):
        assert schema(write(tmp_path / f"bad{i}", "#cloud-config\n" + yaml.safe_dump(bad)))[0] != 0
    no_header = r.user_data_path(node).read_text().removeprefix("#cloud-config\n")
    assert schema(write(tmp_path / "no-header", no_header))[0] != 0


def test_user_data_creating_the_ssh_user_passes_cloud_init_schema(tmp_path: Path) -> None:
    """sshUser: cloud-init's users-groups creates it next to the image's default user."""
    spec = parse(
        {
            "mesh": {"cidr": "10.77.0.0/24", "sshUser": "ops", "sshPublicKeys": [KEY]},
            "nodes": [{"name": "n1", "cloud": "aws", "region": "eu-central-1", "size": "t3.micro"}],
        }
    )
    text = node_user_data_from_conf(build_plan(spec), "n1", "[Interface]\n")
    assert yaml.safe_load(text)["users"][1]["name"] == "ops"
    code, output = schema(write(tmp_path / "ud", text))
    assert code == 0, output
    broken = text.replace("lock_passwd: true", "lock_passwd: [true]")
    assert schema(write(tmp_path / "ud-broken", broken))[0] != 0  # the gate reads the users entry
