"""Big meshes: the compact user data is what real cloud-init turns back into the exact wg0.conf.

A 200-node full mesh with PSKs is over Hetzner's 32 KiB as text, so its Hetzner nodes carry
wg0.conf as `encoding: gz+b64`. Real cloud-init (lab.sandbox: a throw-away mount namespace,
never the host's /etc) applies write_files, and the file it writes must equal node_wg_conf
byte for byte, with mode 0600. Sizes past every form fail with one line naming the fix.
"""

from __future__ import annotations

import importlib
import ipaddress
import json
import random
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Figure

from cloudinit.cloudconfig import WG_CONF_PATH
from cloudinit.render import USER_DATA_LIMITS, encode_for_cloud, node_user_data, node_wg_conf
from lab.core.errors import LabError
from lab.netns.sandbox import apply_write_files
from lab.netns.userdata import parse_user_data
from mesh.errors import RenderError
from mesh.plan import build_plan
from mesh.plan_types import MeshPlan
from mesh.spec import parse
from tools.render import KeyMaterial, placeholder_endpoints

from .artifact_helpers import need_root, need_tool

HARNESS = Path(__file__).resolve().parents[1] / "program"


def mesh(n: int) -> tuple[MeshPlan, KeyMaterial, dict[str, str]]:
    """The bench's synthetic N-node three-cloud full mesh with PSKs, rendered with fresh keys."""
    if str(HARNESS) not in sys.path:
        sys.path.insert(0, str(HARNESS))
    raw: dict[str, str] = importlib.import_module("synthetic_stacks").three_clouds(n)
    config: dict[str, Any] = {k.removeprefix("wgmesh:"): json.loads(v) for k, v in raw.items()}
    spec = parse(config)
    return build_plan(spec), KeyMaterial.fresh(spec), placeholder_endpoints(spec)


@pytest.fixture(scope="module")
def big() -> tuple[MeshPlan, KeyMaterial, dict[str, str]]:
    return mesh(200)


def render(plan: MeshPlan, keys: KeyMaterial, endpoints: dict[str, str], node: str) -> tuple[str, str]:
    """(user data, wg0.conf) for one node."""
    member = keys.for_member(node, keys.public_keys())
    return node_user_data(plan, node, member, endpoints), node_wg_conf(plan, node, member, endpoints)


def test_cloud_init_writes_the_compressed_wg_conf_byte_for_byte(
    big: tuple[MeshPlan, KeyMaterial, dict[str, str]], tmp_path: Path
) -> None:
    need_root()
    need_tool("cloud-init")
    need_tool("unshare")
    plan, keys, endpoints = big
    node = next(n.name for n in plan.nodes if n.cloud == "hcloud")
    text, wg_conf = render(plan, keys, endpoints, node)
    doc = yaml.safe_load(text)
    entry = next(f for f in doc["write_files"] if f["path"] == WG_CONF_PATH)
    assert entry["encoding"] == "gz+b64"
    assert len(wg_conf.encode()) > 40_000  # 199 peers with PSKs: more than Hetzner takes as text
    assert encode_for_cloud(text, "hcloud", node).text == text  # fits Hetzner as plain text

    user_data = tmp_path / "user-data"
    user_data.write_text(text)
    user_data.chmod(0o600)
    files = parse_user_data(text, node).write_files
    out = tmp_path / "written"
    apply_write_files(user_data, files, out, tmp_path / "mnt", tmp_path / "cloud-init.log", node)
    written = out / WG_CONF_PATH.lstrip("/")
    assert written.read_bytes() == wg_conf.encode()
    assert stat.S_IMODE(written.stat().st_mode) == 0o600


def test_small_meshes_stay_readable_and_big_ones_compress_only_where_needed(
    big: tuple[MeshPlan, KeyMaterial, dict[str, str]],
) -> None:
    small_plan, small_keys, small_endpoints = mesh(10)
    for n in small_plan.nodes:
        text = render(small_plan, small_keys, small_endpoints, n.name)[0]
        assert "encoding:" not in text and "[Peer]" in text
    plan, keys, endpoints = big
    forms = {}
    for cloud in ("aws", "gcp", "hcloud"):
        node = next(n.name for n in plan.nodes if n.cloud == cloud)
        forms[cloud] = "encoding: gz+b64" in render(plan, keys, endpoints, node)[0]
    # GCP takes 256 KB of text; AWS gzips the whole document instead of one file.
    assert forms == {"aws": False, "gcp": False, "hcloud": True}


def test_lab_reader_understands_the_compressed_file(
    big: tuple[MeshPlan, KeyMaterial, dict[str, str]],
) -> None:
    plan, keys, endpoints = big
    node = next(n.name for n in plan.nodes if n.cloud == "hcloud")
    text = render(plan, keys, endpoints, node)[0]
    files = {f.path: f for f in parse_user_data(text, node).write_files}
    assert files[WG_CONF_PATH].encoding == "gz+b64"
    # cloud-init would write an unknown encoding's text as is: the lab refuses it instead.
    with pytest.raises(LabError, match=r"write_files\[0\]\.encoding"):
        parse_user_data(text.replace("encoding: gz+b64", "encoding: gz+b46"), node)


def test_past_every_form_the_error_is_one_line_naming_node_size_limit_and_fix() -> None:
    plan, keys, endpoints = mesh(400)
    for cloud in ("aws", "hcloud"):
        node = next(n.name for n in plan.nodes if n.cloud == cloud)
        text, _ = render(plan, keys, endpoints, node)
        with pytest.raises(RenderError) as e:
            encode_for_cloud(text, cloud, node)
        message = str(e.value)
        assert "\n" not in message
        assert message.startswith(f"{node}: user data is ")
        assert f"over the {USER_DATA_LIMITS[cloud]}-byte limit of {cloud}" in message
        assert "topology: hub" in message
        assert "PrivateKey" not in message and "PresharedKey" not in message


def test_a_150_node_full_mesh_with_psks_fits_every_cloud_on_every_node(figure: Figure) -> None:
    """Issue 7's floor: every node's user data fits its cloud at 150 nodes.

    Endpoints are random public addresses (the placeholders are sequential and gzip better than
    real ones), and the keys are fresh random keys: what compresses here compresses on a cloud.
    """
    plan, keys, _ = mesh(150)
    rng = random.Random(150)
    endpoints = {
        n.name: str(ipaddress.IPv4Address(rng.randrange(0x01000000, 0xDF000000))) for n in plan.nodes
    }
    assert plan.spec.mesh.preshared_keys and all(len(n.iface.peers) >= 149 for n in plan.nodes)
    sizes: dict[str, int] = {}
    for n in plan.nodes:
        text, _ = render(plan, keys, endpoints, n.name)
        sent = encode_for_cloud(text, n.cloud, n.name).sent_bytes  # raises past the limit
        limit = USER_DATA_LIMITS[n.cloud]
        assert limit is not None and sent <= limit, (n.name, n.cloud, sent)
        sizes[n.cloud] = max(sizes.get(n.cloud, 0), sent)
    assert set(sizes) == {"aws", "gcp", "hcloud"}
    figure(f"150-node full mesh with PSKs, largest user data sent per cloud (bytes): {sizes}")
