"""mesh.json's one definition (mesh/manifest.py): what `make render` writes reads back the same,
and a document that is not exactly this format is refused naming the file and the field."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lab.core.errors import LabError
from lab.core.manifest import LabNode, load_mesh
from mesh import manifest
from mesh.manifest import MANIFEST_FILE, ManifestError, ManifestNode
from mesh.plan import build_plan
from mesh.stackfile import load_spec
from tools.render import KeyMaterial, placeholder_endpoints, placeholder_endpoints6, render_stack

Doc = dict[str, Any]


def render(stack: str, out: Path) -> manifest.MeshManifest:
    """Render `stack` with fixed keys into `out`; the manifest built for it, as render wrote it."""
    spec = load_spec(stack)
    names = [n.name for n in spec.nodes] + [c.name for c in spec.clients]
    keys = KeyMaterial.from_raw({n: hashlib.sha256(n.encode()).digest() for n in names}, b"s" * 32)
    plan, endpoints, endpoints6 = build_plan(spec), placeholder_endpoints(spec), placeholder_endpoints6(spec)
    render_stack(stack, plan, out, keys, endpoints, endpoints6)
    return manifest.build(stack, plan, endpoints, keys.public_keys(), endpoints6)


@pytest.mark.parametrize("stack", ["dev", "ipv6", "lab-roaming", "lab-jumpbox", "lab-home"])
def test_what_render_writes_reads_back_field_for_field(tmp_path: Path, stack: str) -> None:
    built = render(stack, tmp_path)
    path = tmp_path / MANIFEST_FILE
    loaded = manifest.load(path)
    assert loaded == built
    assert manifest.dumps(loaded) == path.read_text()
    assert list(json.loads(path.read_text())) == [f.name for f in dataclasses.fields(manifest.MeshManifest)]


def test_members_are_the_nodes_then_the_clients(tmp_path: Path) -> None:
    doc = render("dev", tmp_path)
    assert [m.name for m in doc.members()] == ["aws-fra", "gcp-fra", "hetzner-nbg", "laptop"]


def _set(path: str, value: object) -> Callable[[Doc], None]:
    """A mutation setting `path` (dots and [i] as in the error messages) to `value`."""

    def mutate(doc: Doc) -> None:
        *parents, last = path.replace("[", ".").replace("]", "").split(".")
        target: Any = doc
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[int(last) if last.isdigit() else last] = value

    return mutate


def _drop(key: str, member: str = "nodes") -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        del doc[member][0][key]

    return mutate


BAD = [
    (_drop("peers"), r"nodes\[0\]\.peers: missing \(render again"),
    (_drop("keepalive", "clients"), r"clients\[0\]\.keepalive: missing"),
    (_set("nodes[1].extra", 1), r"nodes\[1\]\.extra: unknown field"),
    (_set("nodes[1].public_ip", "not-an-ip"), r"nodes\[1\]\.public_ip: 'not-an-ip' is not an IPv4Address$"),
    (
        _set("nodes[0].subnets[0]", "10.0.4.1/24"),
        r"subnets\[0\]: '10.0.4.1/24' is not an IPv4Network or IPv6Net",
    ),
    (_set("port", True), r"port: must be a whole number, got a boolean"),
    (_set("nodes[2].hub", 1), r"nodes\[2\]\.hub: must be true or false, got a number"),
    (_set("topology", "star"), r"topology: must be one of mesh, hub, got 'star'"),
    (_set("cidr6", 6), r"cidr6: must be a string, got a number"),
    (_set("nodes", {}), r"nodes: must be a list, got an object"),
    (_set("clients[0].peers", "aws-fra"), r"clients\[0\]\.peers: must be a list, got a string"),
]


@pytest.mark.parametrize(("mutate", "message"), BAD)
def test_a_document_off_the_format_is_refused_naming_file_and_field(
    tmp_path: Path, mutate: Callable[[Doc], None], message: str
) -> None:
    render("dev", tmp_path)
    path = tmp_path / MANIFEST_FILE
    doc = json.loads(path.read_text())
    mutate(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(ManifestError, match=message) as err:
        manifest.load(path)
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)


def test_a_missing_or_broken_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / MANIFEST_FILE
    with pytest.raises(ManifestError, match=rf"^{path}: not found \(run `make render`\)$"):
        manifest.load(path)
    path.write_text('{"stack": ')
    with pytest.raises(ManifestError, match=rf"^{path}: not JSON \(Expecting value, line 1\)$"):
        manifest.load(path)
    path.write_text("[]")
    with pytest.raises(ManifestError, match=rf"^{path}: must be an object, got a list$"):
        manifest.load(path)


def test_the_lab_reader_carries_every_field_of_its_nodes(tmp_path: Path) -> None:
    """LabNode holds every manifest field but `cloud` (the lab keeps its `cloud: lab` nodes)."""
    doc = render("lab-jumpbox", tmp_path)
    mesh = load_mesh(tmp_path)
    shared = [f.name for f in dataclasses.fields(ManifestNode) if f.name != "cloud"]
    assert set(shared) <= {f.name for f in dataclasses.fields(LabNode)}
    assert [n.name for n in mesh.nodes] == [n.name for n in doc.nodes]
    for lab_node, node in zip(mesh.nodes, doc.nodes, strict=True):
        assert {k: getattr(lab_node, k) for k in shared} == {k: getattr(node, k) for k in shared}
        assert lab_node.user_data == tmp_path / node.name / "user-data"
    assert (mesh.stack, mesh.cidr, mesh.cidr6, mesh.topology, mesh.endpoints) == (
        doc.stack,
        doc.cidr,
        doc.cidr6,
        doc.topology,
        doc.endpoints,
    )


def test_the_lab_refuses_a_render_without_peers(tmp_path: Path) -> None:
    """No guessing a full mesh for a render from before `peers`: `make render` writes a new one."""
    render("lab-hub", tmp_path)
    path = tmp_path / MANIFEST_FILE
    doc = json.loads(path.read_text())
    del doc["nodes"][0]["peers"]
    path.write_text(json.dumps(doc))
    with pytest.raises(LabError, match=r"mesh\.json: nodes\[0\]\.peers: missing"):
        load_mesh(tmp_path)
