"""Admin keys through the real apply script and a real sshd: a rotated-out key stops logging in.

A throwaway mount + network namespace overlays /etc, /var, /home and /run with tmpfs uppers
(nothing reaches the host), then runs the apply command with real `useradd`, `nft`, `sysctl`
and sshd (only `wg`/`wg-quick` are stand-ins: the kernel here has no WireGuard). Bundle 1
(sshUser `ops`, key A) creates `ops` and its key file; sshd, reading the rendered drop-in
first, lets A in and not B. Bundle 2 (key B) rewrites the file: A is refused, B gets in,
with no sshd reload. Bundle 3 carries a drop-in sshd refuses: the apply's `sshd -t` check
stops it before anything is installed and B still logs in. Defects: `sshUser` was never
created, and a rotated key stayed for good.

Needs root and an sshd (openssh-server; `WGMESH_TEST_SSHD` may name another binary).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path

import pytest

from cloudinit.bundle import encode_bundle, node_bundle, parse_bundle
from cloudinit.sync import apply_command
from mesh.plan import build_plan
from mesh.plan_types import MeshPlan
from mesh.spec import parse

from .artifact_helpers import need_root, need_tool

pytestmark = pytest.mark.netns  # root and throwaway namespaces

# The scenario: $1 work dir (keys, bundles, fakes), $2 sshd; prints one line a probe.
SCRIPT = Path(__file__).with_name("scripts") / "admin-keys-sshd.sh"
FAKE_WG = '#!/bin/sh\n[ "$1" != show ] || exit 0\nexit 0\n'
FAKE_WG_QUICK = '#!/bin/sh\n[ "$1" = strip ] && exec grep -Ev \'^(Address|PostUp|PostDown) =\' "$2"\nexit 0\n'
CONF = "[Interface]\nPrivateKey = {key}\nAddress = 10.77.0.1/24\nListenPort = 51820\n"


def sshd_binary() -> str:
    override = os.environ.get("WGMESH_TEST_SSHD")
    if override:
        return override
    return need_tool("sshd")


def plan(key: str) -> MeshPlan:
    mesh = {"cidr": "10.77.0.0/24", "sshUser": "ops", "sshPublicKeys": [key]}
    return build_plan(
        parse({"mesh": mesh, "nodes": [{"name": "n1", "cloud": "lab", "publicIp": "198.51.100.1"}]})
    )


def keypair(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


def test_rotated_admin_key_stops_logging_in_and_ssh_user_is_created(tmp_path: Path) -> None:
    need_root()
    sshd = sshd_binary()
    for tool in ("unshare", "ssh", "ssh-keygen", "useradd", "nft"):
        need_tool(tool)
    work = tmp_path / "w"
    (work / "bin").mkdir(parents=True)
    for name, text in (("wg", FAKE_WG), ("wg-quick", FAKE_WG_QUICK)):
        (work / "bin" / name).write_text(text)
        (work / "bin" / name).chmod(0o755)
    key_a, key_b = keypair(work / "key_a"), keypair(work / "key_b")
    conf = CONF.format(key="yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=")
    (work / "bundle1").write_text(node_bundle(plan(key_a), "n1", conf))
    (work / "bundle2").write_text(node_bundle(plan(key_b), "n1", conf))
    _, files = parse_bundle(node_bundle(plan(key_b), "n1", conf))
    bad = [dataclasses.replace(f, content="NoSuchOption yes\n") if f.part == "sshd" else f for f in files]
    (work / "bundle3").write_text(encode_bundle(bad, ra_guard=False, users=["ops"]))
    env = {**os.environ, "APPLY": apply_command(sudo=False)}
    proc = subprocess.run(
        [
            "unshare",
            "--mount",
            "--net",
            "--propagation",
            "private",
            "--",
            "sh",
            str(SCRIPT),
            str(work),
            sshd,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env=env,
    )
    log = (work / "sshd.log").read_text() if (work / "sshd.log").exists() else ""
    assert proc.returncode == 0, proc.stderr + log
    lines = proc.stdout.splitlines()
    assert lines[:4] == ["first a: ops", "first b: refused", "rotated a: refused", "rotated b: ops"], log
    assert lines[4] == "root 644"  # root-owned, world-readable: sshd reads it as the user (StrictModes)
    # A drop-in sshd refuses (`sshd -t`) is never installed: the running config keeps working.
    assert lines[5:] == ["refused a: refused", "refused b: ops"], proc.stdout
    assert (
        "sshd -t refuses the new /etc/ssh/sshd_config.d/10-wgmesh.conf" in (work / "apply3.out").read_text()
    )
    first = (work / "apply1.out").read_text().split(" host=")[1].split()[0].split(",")
    assert {"sudoers", "keys", "sshd", "user"} <= set(first)  # ops created on the first apply
    assert "host=keys " in (work / "apply2.out").read_text()  # nothing else changed, nothing reloaded
