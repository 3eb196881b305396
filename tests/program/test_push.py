"""`make push` (tools/push.py) against stub `pulumi` and `ssh` executables on PATH.

The stubs record their argv and stdin; the tests check that the payload travels on ssh's stdin
only (never on a command line, never printed), the apply order is Pulumi's (every peers-only
apply, then every full apply), and the push is recorded in `wgmesh:pushed` for that VM.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from wgmesh_mocks import REPO

from cloudinit.remote_apply import remote_apply_command
from components.stale import boot_digest

PRIVATE = "PrivateKey = kP4ZgVtP0P0Zl0oC6b1cU3M9rYh0Jt1xq3b5Yw8n2Vs="
PAYLOADS = {
    "aws-fra": f"[Interface]\n{PRIVATE}\n# aws-fra\n",
    "hetzner-nbg": "[Interface]\nPrivateKey = 0BmQG3oA1f2Yk1qX9hKXk0b7h4S9JfJ3dQmK8w2v1nE=\n# hetzner-nbg\n",
}
TARGETS = {
    "aws-fra": {"host": "198.51.100.1", "user": "ubuntu", "sudo": True, "vmId": "i-0abc", "digest": "x"},
    "hetzner-nbg": {"host": "198.51.100.3", "user": "root", "sudo": False, "vmId": "4711", "digest": "y"},
}
STUB = """#!{python}
import json, os, sys
log = os.environ["STUB_LOG"]
data = sys.stdin.read() if not sys.stdin.isatty() else ""
with open(log, "a") as f:
    f.write(json.dumps({{"argv": [os.path.basename(sys.argv[0]), *sys.argv[1:]], "stdin": data}}) + "\\n")
name = os.path.basename(sys.argv[0])
if name == "pulumi":
    if sys.argv[1:3] == ["stack", "output"]:
        out = os.environ["STUB_PAYLOADS"] if "--show-secrets" in sys.argv else os.environ["STUB_TARGETS"]
        print(open(out).read())
    sys.exit(0)
if os.environ.get("STUB_SSH_FAIL") and not sys.argv[-1].endswith("--peers-only"):
    print("wgmesh-apply: error: wg-quick up failed", file=sys.stderr)
    sys.exit(1)
print("wgmesh-apply: wg0 action=sync peers=2")
"""


@pytest.fixture
def stubs(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("pulumi", "ssh"):
        path = bin_dir / name
        path.write_text(STUB.format(python=sys.executable))
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    (tmp_path / "targets.json").write_text(json.dumps(TARGETS))
    (tmp_path / "payloads.json").write_text(json.dumps(PAYLOADS))
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "STUB_LOG": str(tmp_path / "log.jsonl"),
        "STUB_TARGETS": str(tmp_path / "targets.json"),
        "STUB_PAYLOADS": str(tmp_path / "payloads.json"),
    }


def push(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    proc = subprocess.run(
        [sys.executable, "-m", "tools.push", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    log = Path(env["STUB_LOG"])
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return proc, calls


def test_push_one_node_sends_its_payload_on_stdin_and_records_it(stubs: dict[str, str]) -> None:
    proc, calls = push(stubs, "--stack", "dev", "--node", "aws-fra")
    assert proc.returncode == 0, proc.stderr
    argvs = [c["argv"] for c in calls]
    assert argvs[0] == ["pulumi", "stack", "output", "pushTargets", "--json", "--stack", "dev"]
    assert argvs[1] == [
        "pulumi",
        "stack",
        "output",
        "nodePayloads",
        "--show-secrets",
        "--json",
        "--stack",
        "dev",
    ]
    ssh = [c for c in calls if c["argv"][0] == "ssh"]
    assert [c["argv"][-2:] for c in ssh] == [
        ["ubuntu@198.51.100.1", remote_apply_command(True, peers_only=True)],
        ["ubuntu@198.51.100.1", remote_apply_command(True)],
    ]
    assert all(c["stdin"] == PAYLOADS["aws-fra"] for c in ssh)
    assert "BatchMode=yes" in ssh[0]["argv"]
    record = f"i-0abc:{boot_digest(PAYLOADS['aws-fra'])}"
    assert argvs[-1] == [
        "pulumi",
        "config",
        "set",
        "--path",
        'wgmesh:pushed["aws-fra"]',
        record,
        "--stack",
        "dev",
    ]
    # No secret on any command line or in what the tool prints.
    secret = PRIVATE.split(" = ")[1]
    assert not any(secret in " ".join(a) for a in argvs)
    assert secret not in proc.stdout + proc.stderr
    assert "aws-fra: wgmesh-apply: wg0 action=sync peers=2" in proc.stdout


def test_push_every_node_runs_all_peers_only_applies_first(stubs: dict[str, str]) -> None:
    proc, calls = push(stubs, "--stack", "dev")
    assert proc.returncode == 0, proc.stderr
    steps = [(c["argv"][-2], c["argv"][-1].endswith("--peers-only")) for c in calls if c["argv"][0] == "ssh"]
    assert steps == [
        ("ubuntu@198.51.100.1", True),
        ("root@198.51.100.3", True),
        ("ubuntu@198.51.100.1", False),
        ("root@198.51.100.3", False),
    ]
    hetzner = [c for c in calls if c["argv"][0] == "ssh" and c["argv"][-2].startswith("root@")]
    assert all("sudo -n" not in c["argv"][-1] and c["stdin"] == PAYLOADS["hetzner-nbg"] for c in hetzner)
    recorded = [c["argv"][5] for c in calls if c["argv"][1:3] == ["config", "set"]]
    assert recorded == [
        f"i-0abc:{boot_digest(PAYLOADS['aws-fra'])}",
        f"4711:{boot_digest(PAYLOADS['hetzner-nbg'])}",
    ]


def test_a_failed_apply_records_nothing(stubs: dict[str, str]) -> None:
    proc, calls = push({**stubs, "STUB_SSH_FAIL": "1"}, "--stack", "dev", "--node", "aws-fra")
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "push: aws-fra: apply failed over ssh (exit 1): wgmesh-apply: error: wg-quick up failed"
    )
    assert [c for c in calls if c["argv"][1:3] == ["config", "set"]] == []


def test_an_unknown_node_is_named(stubs: dict[str, str]) -> None:
    proc, calls = push(stubs, "--stack", "dev", "--node", "gcp-nowhere")
    assert proc.returncode == 1
    assert proc.stderr.strip() == "push: no cloud node gcp-nowhere in the stack (nodes: aws-fra, hetzner-nbg)"
    assert [c for c in calls if c["argv"][0] == "ssh"] == []


def test_make_push_needs_a_stack() -> None:
    proc = subprocess.run(["make", "-s", "push"], cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "make push: set STACK=<stack>" in proc.stderr
