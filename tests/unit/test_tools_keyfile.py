"""`make render --keys FILE`: keys stay across renders, rotate on keyEpoch, follow membership."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mesh import manifest
from mesh.errors import RenderError
from mesh.keys import private_key
from mesh.manifest import MANIFEST_FILE
from mesh.spec import MeshSpec
from mesh.stackfile import load_spec
from tools.keyfile import load_or_create
from tools.render import main as render_main

STACKS = Path(__file__).resolve().parents[1] / "lab" / "stacks"


def spec(name: str) -> MeshSpec:
    return load_spec(str(STACKS / f"Pulumi.day2-{name}.yaml"))


def test_keys_are_reused_rotated_added_and_dropped(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    two = load_or_create(path, spec("two"))
    assert set(two.changed) == {"day2-a", "day2-b", "mesh secret"}
    assert path.stat().st_mode & 0o777 == 0o600
    three = load_or_create(path, spec("three"))
    assert three.changed == ("day2-c",)
    assert {n: three.members[n] for n in two.members} == two.members
    assert three.mesh_secret == two.mesh_secret
    again = load_or_create(path, spec("three"))
    assert again.changed == () and again.members == three.members
    rotated = load_or_create(path, spec("rotated"))
    assert rotated.changed == ("day2-c",)
    assert rotated.members["day2-c"] != three.members["day2-c"]
    assert rotated.members["day2-a"] == three.members["day2-a"]
    back = load_or_create(path, spec("two"))
    assert back.changed == ()
    assert set(json.loads(path.read_text())["members"]) == {"day2-a", "day2-b"}


def test_repr_and_errors_never_show_a_key(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    stored = load_or_create(path, spec("two"))
    for raw in stored.members.values():
        assert private_key(raw) not in repr(stored)
    doc = json.loads(path.read_text())
    secret_b64 = doc["members"]["day2-a"]["random"]
    doc["members"]["day2-a"]["random"] = secret_b64[:-4]
    path.write_text(json.dumps(doc))
    with pytest.raises(RenderError) as err:
        load_or_create(path, spec("two"))
    assert secret_b64[:-4] not in str(err.value) and "members.day2-a" in str(err.value)
    path.write_text("{}")
    with pytest.raises(RenderError, match="not a wgmesh-render-keys/1 keys file"):
        load_or_create(path, spec("two"))


def test_render_with_keys_file_keeps_public_keys(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    pubs = []
    for run in ("one", "two"):
        out = tmp_path / run
        stack = str(STACKS / "Pulumi.day2-three.yaml")
        assert render_main(["--stack", stack, "--out", str(out), "--keys", str(keys)]) == 0
        mesh = manifest.load(out / MANIFEST_FILE)
        pubs.append({n.name: n.public_key for n in mesh.nodes})
    assert pubs[0] == pubs[1] and len(set(pubs[0].values())) == 3
