"""ext (issue 15): the rendered installer run for real, as root, by `sh` and by `bash`.

A throwaway mount and network namespace: /etc is an overlay whose writes land in a tmpfs (the
host's /etc is never written), /run is an empty tmpfs (no systemd: nothing is enabled on the
host's systemd; the apply then starts wg0 with wg-quick, wireguard-go without the kernel module).
The real wg, wg-quick, nft and sysctl run. The first run brings wg0 up with the rendered files
at their modes and the masquerade out of `lanInterface`; the second changes nothing. The netns
lab (tests/lab) runs it on a lab node with its peers; this checks the installer alone.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from cloudinit.installer import INSTALLER_NAME

from .artifact_helpers import Rendered, need_root, need_tool

pytestmark = pytest.mark.netns  # root and a throwaway namespace

KEY_RE = re.compile(r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=")
MODES = (
    "/etc/wireguard/wg0.conf",
    "/etc/wireguard/wgmesh.nft",
    "/etc/sysctl.d/90-wgmesh.conf",
    "/etc/wgmesh/metadata-guard.nft",
    "/etc/systemd/system/wgmesh-metadata-guard.service",
    "/etc/ssh/sshd_config.d/10-wgmesh.conf",
    "/etc/sudoers.d/90-wgmesh",
    "/etc/wgmesh/ssh/root",
)


def inside(scratch: Path, installer: Path, shell: str) -> str:
    """The namespace's script: isolate /etc and /run, install twice, report, take wg0 down."""
    q = shlex.quote
    up, work = q(str(scratch / "up")), q(str(scratch / "work"))
    return f"""set -u
trap 'wg-quick down wg0 >/dev/null 2>&1 || ip link del wg0 2>/dev/null' EXIT
mount -t tmpfs none {q(str(scratch))} && mkdir {up} {work}
mount -t overlay overlay -o lowerdir=/etc,upperdir={up},workdir={work} /etc
mount -t tmpfs none /run
ip link set lo up
echo "== first"; {shell} {q(str(installer))}; echo "rc=$?"
echo "== second"; {shell} {q(str(installer))}; echo "rc=$?"
echo "== state"
wg show wg0 peers | wc -l
nft list table inet wgmesh | grep masquerade
sysctl -n net.ipv4.ip_forward
stat -c '%n %a %U:%G' {" ".join(MODES)}
"""


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_installer_brings_wg0_up_with_the_rendered_files_and_a_second_run_changes_nothing(
    rendered_stacks: dict[str, Rendered], tmp_path: Path, shell: str
) -> None:
    need_root()
    for tool in ("unshare", "wg", "wg-quick", "nft"):
        need_tool(tool)
    installer = rendered_stacks["lab-home"].out / "home" / INSTALLER_NAME
    scratch = tmp_path / "etc-overlay"
    scratch.mkdir()
    proc = subprocess.run(
        [
            "unshare",
            "--mount",
            "--net",
            "--propagation",
            "private",
            "sh",
            "-c",
            inside(scratch, installer, shell),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    assert not KEY_RE.search(proc.stdout + proc.stderr)
    out = proc.stdout
    first = out.split("== first\n")[1].split("== second\n")[0].splitlines()
    second = out.split("== second\n")[1].split("== state\n")[0].splitlines()
    state = out.split("== state\n")[1].splitlines()
    assert len(first) == 2 and first[1] == "rc=0", out + proc.stderr
    assert first[0].startswith(
        "wgmesh-install: home installed=- enabled=- wg0 action=restart reason=down peers=1 "
    )
    assert len(second) == 2 and second[1] == "rc=0", out + proc.stderr
    fields = dict(w.split("=", 1) for w in second[0].split() if "=" in w)
    assert (fields["action"], fields["host"], fields["peers_changed"]) == ("sync", "-", "0")
    assert state[0].strip() == "1"
    assert state[1].strip() == 'iifname "wg0" oifname "wlp0s0f0" ip daddr 10.11.12.0/24 masquerade'
    assert state[2] == "1"
    modes = dict(line.split(" ", 1) for line in state[3:])
    assert modes == {
        "/etc/wireguard/wg0.conf": "600 root:root",
        "/etc/wireguard/wgmesh.nft": "600 root:root",
        "/etc/sysctl.d/90-wgmesh.conf": "644 root:root",
        "/etc/wgmesh/metadata-guard.nft": "644 root:root",
        "/etc/systemd/system/wgmesh-metadata-guard.service": "644 root:root",
        "/etc/ssh/sshd_config.d/10-wgmesh.conf": "644 root:root",
        "/etc/sudoers.d/90-wgmesh": "440 root:root",
        "/etc/wgmesh/ssh/root": "644 root:root",
    }
