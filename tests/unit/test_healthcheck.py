"""The health script (cloudinit/scripts/wgmesh-health.bash): bash -n clean, and its verdicts against a fake
`wg` and `ping` on PATH, run as the node runs it (`bash -c <script> wgmesh-health <args>`)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from test_cloudinit_sync import shellcheck

from cloudinit.healthcheck import (
    SCRIPT_NAME,
    ExpectedPeer,
    expected_peers,
    health_argv,
    health_command,
    health_script,
)
from mesh.plan import build_plan
from mesh.spec import parse

REPO = Path(__file__).resolve().parents[2]
KEY_A = "A" * 43 + "="
KEY_B = "B" * 43 + "="
PEERS = (
    ExpectedPeer("fra", KEY_A, "10.77.0.1"),
    ExpectedPeer("nbg", KEY_B, "10.77.0.3", "fd77::3"),
)

FAKE_WG = """#!/bin/sh
# wg show wg0 latest-handshakes: the lines the test wrote
[ "$1 $3" = "show latest-handshakes" ] || exit 2
cat "$FAKE/handshakes"
"""
FAKE_PING = """#!/bin/sh
echo "$*" >> "$FAKE/ping.log"
for last; do :; done
size=0; prev=""
for a; do [ "$prev" = -s ] && size=$a; prev=$a; done
grep -qxF "$last" "$FAKE/down" && exit 1
# A path that carries only small packets: fails the full-size probe.
[ "$size" -gt 1000 ] && grep -qxF "$last" "$FAKE/small" && exit 1
exit 0
"""


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("wg", FAKE_WG), ("ping", FAKE_PING)):
        path = bin_dir / name
        path.write_text(text)
        path.chmod(0o755)
    for name in ("handshakes", "down", "small", "ping.log"):
        (tmp_path / name).write_text("")
    return tmp_path


def fake_env(fake: Path) -> dict[str, str]:
    return {**os.environ, "FAKE": str(fake), "PATH": f"{fake / 'bin'}:{os.environ['PATH']}"}


def run(fake: Path, argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=False, env=fake_env(fake), text=True, capture_output=True)


def health(node: str, mtu: int, wait: int) -> list[str]:
    """The command a node runs, without sudo: `bash -c <script> wgmesh-health <args>`."""
    return health_argv(node, PEERS, mtu, wait=wait, sudo=False)


def handshakes(fake: Path, ages: dict[str, int | None]) -> None:
    now = int(time.time())
    lines = [f"{k}\t{0 if age is None else now - age}" for k, age in ages.items()]
    (fake / "handshakes").write_text("\n".join(lines) + "\n")


def test_script_is_valid_bash() -> None:
    bash = shutil.which("bash")
    assert bash is not None
    result = subprocess.run([bash, "-n"], check=False, input=health_script(), text=True, capture_output=True)
    assert result.returncode == 0, result.stderr


def test_what_the_node_runs_is_shellcheck_clean() -> None:
    """The script without its header (and the shebang that names bash for shellcheck)."""
    proc = subprocess.run(
        [shellcheck(), "-s", "bash", "--severity=style", "-"],
        input=health_script(),
        text=True,
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout


def test_all_fresh_and_full_mtu_passes(fake: Path) -> None:
    handshakes(fake, {KEY_A: 5, KEY_B: 30})
    result = run(fake, health("gcp", 1380, wait=0))
    assert result.returncode == 0, result.stdout + result.stderr
    rows = result.stdout.splitlines()
    assert rows[0].split()[:2] == ["PEER", "ADDRESS"]
    assert rows[1].split()[0] == "fra" and rows[1].split()[-1] == "ok"
    assert rows[2].split()[:3] == ["nbg", "10.77.0.3", "fd77::3"]
    assert rows[-1] == "wgmesh-health: gcp: ok, 2 peers"
    pings = (fake / "ping.log").read_text().splitlines()
    # Full MTU with don't-fragment: 1380 - 28 over IPv4, 1380 - 48 over IPv6.
    assert "-4 -c 3 -W 2 -M do -s 1352 -q 10.77.0.1" in pings
    assert "-6 -c 3 -W 2 -M do -s 1332 -q fd77::3" in pings


def test_missing_handshake_stale_handshake_and_small_path_are_listed(fake: Path) -> None:
    handshakes(fake, {KEY_A: None, KEY_B: 400})
    (fake / "small").write_text("10.77.0.3\n")
    result = run(fake, health("aws", 1420, wait=0))
    assert result.returncode == 1
    # The age is read a moment after it was written: 400 s, or a second or two more on a busy machine.
    assert re.fullmatch(
        r"wgmesh-health: aws: missing: fra \(no handshake\); "
        r"nbg \(handshake 40[0-9]s old, no 1420-byte ping to 10\.77\.0\.3\)",
        result.stderr.strip(),
    ), result.stderr
    table = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert " never " in table["fra"] and " ok " in table["fra"]
    assert "FAIL" in table["nbg"]


def test_waits_and_nudges_until_the_handshake_arrives(fake: Path) -> None:
    """A stale peer gets a 1-packet ping each round; the script waits (up to `wait`) for the handshake."""
    handshakes(fake, {KEY_A: 5, KEY_B: None})
    proc = subprocess.Popen(
        health("aws", 1420, wait=20),
        env=fake_env(fake),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 10
    while "-c 1 -W 1 -q 10.77.0.3" not in (fake / "ping.log").read_text():
        assert time.monotonic() < deadline, "the script never nudged the stale peer"
        time.sleep(0.1)
    handshakes(fake, {KEY_A: 5, KEY_B: 1})
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, out + err
    nudges = [p for p in (fake / "ping.log").read_text().splitlines() if p.startswith("-c 1")]
    assert nudges and all(p.endswith("10.77.0.3") for p in nudges)  # the fresh peer is left alone


def test_unreachable_peer_fails_after_the_wait(fake: Path) -> None:
    handshakes(fake, {KEY_A: 5, KEY_B: 5})
    (fake / "down").write_text("10.77.0.1\n")
    started = time.monotonic()
    result = run(fake, health("x", 1420, wait=1))
    assert time.monotonic() - started < 15
    assert result.returncode == 1
    assert result.stderr.strip() == "wgmesh-health: x: missing: fra (no 1420-byte ping to 10.77.0.1)"


def test_values_travel_as_arguments_and_the_script_is_the_same_for_every_node() -> None:
    argv = shlex.split(health_command("aws", PEERS, 1420, wait=7))
    assert argv[:5] == ["sudo", "-n", "--", "bash", "-c"]
    assert argv[5] == health_script()
    assert argv[6:] == [
        SCRIPT_NAME,
        "wg0",
        "aws",
        "1420",
        "180",
        "7",
        f"fra {KEY_A} 10.77.0.1 -",
        f"nbg {KEY_B} 10.77.0.3 fd77::3",
    ]
    assert KEY_A not in health_script() and "aws" not in health_script()


def test_the_node_gets_the_script_file_without_its_header() -> None:
    text = (REPO / "cloudinit" / "scripts" / "wgmesh-health.bash").read_text()
    body = health_script()
    assert text.startswith("#!/bin/bash\n") and text.endswith(body)
    assert body.startswith("set -uo pipefail\n")  # the first line of code: no shebang, no header comment
    assert "Usage:" not in body and "# Seconds since the peer's latest handshake" in body


def test_no_peers_is_ok(fake: Path) -> None:
    result = run(fake, health_argv("solo", (), 1420, wait=0, sudo=False))
    assert result.returncode == 0, result.stderr
    header, *rest = result.stdout.splitlines()
    assert header.split()[:2] == ["PEER", "ADDRESS"] and rest == ["wgmesh-health: solo: ok, 0 peers"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["wg0", "aws", "1420", "180"], "usage: wgmesh-health INTERFACE NODE MTU MAX_AGE WAIT [PEER...]"),
        (["wg0", "aws", "14x0", "180", "0"], "wgmesh-health: MTU is not a number: '14x0'"),
        (["wg0", "aws", "1420", "180", "-1"], "wgmesh-health: WAIT is not a number: '-1'"),
    ],
)
def test_bad_arguments_exit_2_before_any_probe(fake: Path, args: list[str], message: str) -> None:
    result = run(fake, ["bash", "-c", health_script(), SCRIPT_NAME, *args])
    assert (result.returncode, result.stderr.strip(), result.stdout) == (2, message, "")
    assert (fake / "ping.log").read_text() == ""


def test_command_runs_as_root_via_sudo_unless_root_logs_in() -> None:
    assert health_command("a", PEERS, 1420).startswith("sudo -n -- bash -c ")
    assert health_command("a", PEERS, 1420, sudo=False).startswith("bash -c ")


def test_expected_peers_are_the_node_peers_only() -> None:
    spec = parse(
        {
            "mesh": {"cidr": "10.77.0.0/24", "cidr6": "fd77::/64", "topology": "hub"},
            "nodes": [
                {"name": "hub", "cloud": "lab", "publicIp": "198.51.100.1", "hub": True},
                {"name": "s1", "cloud": "lab", "publicIp": "198.51.100.2"},
                {"name": "s2", "cloud": "lab", "publicIp": "198.51.100.3"},
            ],
            "clients": [{"name": "laptop"}],
        }
    )
    plan = build_plan(spec)
    keys = {m: f"{m}-pub" for m in ("hub", "s1", "s2", "laptop")}
    spoke = expected_peers(plan, "s1", keys)
    assert [(p.name, p.public_key) for p in spoke] == [("hub", "hub-pub")]
    assert spoke[0].address == str(plan.node("hub").iface.address.ip)
    assert spoke[0].address6 is not None
    assert [p.name for p in expected_peers(plan, "hub", keys)] == ["s1", "s2"]
