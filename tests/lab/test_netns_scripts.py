"""The netns driver's shell scripts, run for real (root, namespaces, no lab): cloud-init's
write_files sandbox and a node's or client's private mounts, each removed again by tear_down."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest
from labtest import require_netns_lab

from lab.core.errors import LabError
from lab.core.mounts import mounts_under
from lab.core.network import add_namespace, namespace_inode
from lab.core.proc import NETNS_DIR, NODE_ENV
from lab.core.state import LabState
from lab.netns import topology
from lab.netns.layout import Layout
from lab.netns.sandbox import apply_write_files
from lab.netns.script_files import PRIVATE_MOUNTS, WRITE_FILES_SANDBOX, script_text
from lab.netns.teardown import tear_down
from lab.netns.userdata import WriteFile, parse_user_data

pytestmark = pytest.mark.netns

USER_DATA = """#cloud-config
write_files:
  - path: /etc/wgmesh-test/secret
    permissions: "0600"
    content: not a key
  - path: /etc/wgmesh-test/open
    permissions: "0644"
    content: hello
"""


@pytest.fixture(autouse=True)
def _need_root() -> None:
    """The netns lab's own gate: root and its tools; outside CI a skip, under CI=true a failure."""
    require_netns_lab()


def test_scripts_ship_as_package_resources() -> None:
    for name in (PRIVATE_MOUNTS, WRITE_FILES_SANDBOX):
        text = script_text(name)
        assert text.startswith("#!/bin/sh\n") and "set -eu\n" in text and 'main "$@"' in text


def _sandbox(tmp_path: Path, user_data: str, extra_path: str | None = None) -> Path:
    ud = tmp_path / "user-data"
    ud.write_text(user_data)
    files = list(parse_user_data(user_data, "t").write_files)
    assert len(files) == 2
    if extra_path:
        files.append(WriteFile(extra_path, deferred=False))
    out = tmp_path / "written"
    apply_write_files(ud, files, out, tmp_path / "mnt", tmp_path / "cloud-init.log", "t")
    return out


def test_write_files_sandbox_copies_what_cloud_init_wrote_with_its_modes(tmp_path: Path) -> None:
    out = _sandbox(tmp_path, USER_DATA)
    secret, public = out / "etc/wgmesh-test/secret", out / "etc/wgmesh-test/open"
    assert secret.read_text() == "not a key" and stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert public.read_text() == "hello" and stat.S_IMODE(public.stat().st_mode) == 0o644
    assert not Path("/etc/wgmesh-test").exists()  # the host's /etc was never written
    assert mounts_under(tmp_path) == []  # the sandbox's mounts vanished with its namespace
    assert stat.S_IMODE((tmp_path / "cloud-init.log").stat().st_mode) == 0o600


def test_write_files_sandbox_fails_on_a_file_cloud_init_did_not_write(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="cloud-init did not write /etc/wgmesh-test/missing"):
        _sandbox(tmp_path, USER_DATA, extra_path="/etc/wgmesh-test/missing")


def _inside(layout: Layout, node: str, *cmd: str) -> subprocess.CompletedProcess[str]:
    argv = ["nsenter", f"--net={NETNS_DIR / layout.node_ns(node)}", f"--mount={layout.mount_ns(node)}", "--"]
    return subprocess.run([*argv, *cmd], capture_output=True, text=True, env=dict(NODE_ENV), check=False)


def test_private_mounts_show_written_files_shims_and_own_run_and_sys(tmp_path: Path) -> None:
    layout = Layout(root=tmp_path / "lab", prefix="wgm-s-")
    state = LabState(layout.state_file)
    written = tmp_path / "written"
    (written / "etc/wgmesh-test").mkdir(parents=True)
    (written / "etc/wgmesh-test/file").write_text("from the render")
    (written / "run/wgmesh-test").mkdir(parents=True)
    shim = tmp_path / "shim"
    shim.write_text("#!/bin/sh\necho shimmed\n")
    shim.chmod(0o755)
    try:
        add_namespace(state, layout.node_ns("n"))
        topology.prepare_mount_ns_dir(state, layout)
        topology.make_node_fs(state, layout, "n", written, {str(shim): "/usr/bin/true"})
        assert _inside(layout, "n", "cat", "/etc/wgmesh-test/file").stdout == "from the render"
        assert _inside(layout, "n", "test", "-d", "/run/wgmesh-test").returncode == 0
        assert _inside(layout, "n", "/usr/bin/true").stdout == "shimmed\n"
        assert _inside(layout, "n", "ls", "/sys/class/net").stdout.split() == ["lo"]  # its own /sys
        assert _inside(layout, "n", "ls", "/run/netns").returncode != 0  # no host /run in there
        _inside(layout, "n", "touch", "/etc/wgmesh-test/later")
        assert not Path("/etc/wgmesh-test").exists()  # writes stay in the node
        assert subprocess.run(["/usr/bin/true"], capture_output=True, text=True, check=True).stdout == ""
    finally:
        tear_down(layout)
    assert namespace_inode(layout.node_ns("n")) is None
    assert mounts_under(layout.root) == [] and not layout.root.exists()


def test_private_mounts_for_a_client_overlay_etc_without_written_files(tmp_path: Path) -> None:
    layout = Layout(root=tmp_path / "lab", prefix="wgm-s-")
    state = LabState(layout.state_file)
    try:
        add_namespace(state, layout.node_ns("c"))
        topology.prepare_mount_ns_dir(state, layout)
        layout.mount_ns("c").touch(mode=0o600)
        state.mounts.append(str(layout.mount_ns("c")))
        state.save()
        proc = subprocess.run(
            topology.private_mounts_argv(layout.node_ns("c"), layout.mount_ns("c"), ["etc", "var"]),
            env=topology.private_mounts_env(layout, "16m"),
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert _inside(layout, "c", "test", "-d", "/etc/wireguard").returncode == 0
        assert "size=16384k" in _inside(layout, "c", "grep", " /run ", "/proc/self/mounts").stdout
        assert _inside(layout, "c", "ls", "/run/netns").returncode != 0
    finally:
        tear_down(layout)
    assert namespace_inode(layout.node_ns("c")) is None and not layout.root.exists()
