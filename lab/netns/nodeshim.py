"""Stand-ins for systemctl, sysctl and apt inside a netns lab node (stdlib only).

Each node's mount namespace has these bind-mounted over /usr/bin/systemctl, /usr/sbin/sysctl,
/usr/bin/apt-get and /usr/bin/apt, so the rendered runcmd runs unchanged and can never reach
the host's systemd, host-wide kernel settings or a package mirror:

- `systemctl enable --now wg-quick@wg0` -> `wg-quick up wg0` (in this node);
- `sysctl` writes only `net.*` keys, through this network namespace's /proc/sys/net;
- package installs succeed when the packages are already installed, fail otherwise.

    python -m lab.netns.nodeshim systemctl|sysctl|apt-get|apt ARGS...
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from lab.core.errors import LabError  # stdlib only, like this module: nodes start it fast

TOOLS = ("systemctl", "sysctl", "apt-get", "apt")
SYSCTL_DIRS = (
    "/etc/sysctl.d",
    "/run/sysctl.d",
    "/usr/local/lib/sysctl.d",
    "/usr/lib/sysctl.d",
    "/lib/sysctl.d",
)
_WG_UNIT = re.compile(r"^wg-quick@([A-Za-z0-9_=+.-]{1,15})$")  # matched without ".service"


def say(message: str) -> None:
    print(f"lab: {message}", file=sys.stderr)


HOST_NETNS_ENV = "WGMESH_LAB_HOST_NETNS"


def in_host_netns() -> bool:
    """True unless this process is in a network namespace other than the lab host's.

    The shim script carries the inode of the network namespace the lab was started from.
    """
    host = os.environ.get(HOST_NETNS_ENV, "")
    return not host.isdigit() or os.stat("/proc/self/ns/net").st_ino == int(host)


# ----------------------------------------------------------------------------- sysctl


def sysctl_path(key: str) -> Path:
    """/proc/sys path of a per-network-namespace key; LabError for anything else.

    Only `net.*` is namespaced; net keys that are global are absent or read-only inside a
    non-initial network namespace, so a write here can only change this namespace.
    """
    parts = key.replace("/", ".").split(".")
    if parts[0] != "net" or len(parts) < 2 or any(not p or p in (".", "..") for p in parts):
        raise LabError(f"sysctl {key}: not a per-network-namespace key, refused in the lab")
    return Path("/proc/sys", *parts)


def parse_sysctl_lines(lines: Iterable[str]) -> list[tuple[str, str, bool]]:
    """(key, value, ignore_errors) per setting line, as sysctl.d(5) reads them."""
    settings: list[tuple[str, str, bool]] = []
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        ignore = line.startswith("-")
        key, sep, value = line.lstrip("-").partition("=")
        if not sep:
            continue
        settings.append((key.strip(), value.strip(), ignore))
    return settings


def write_key(key: str, value: str, *, quiet: bool) -> None:
    path = sysctl_path(key)
    try:
        path.write_text(value + "\n")
    except FileNotFoundError:
        raise LabError(f"sysctl {key}: not available inside a network namespace") from None
    except OSError as e:
        raise LabError(f"sysctl {key}: {e.strerror}") from None
    if not quiet:
        print(f"{key} = {value}")


def apply_file(path: Path, *, quiet: bool, skip_global: bool) -> int:
    failures = 0
    for key, value, ignore in parse_sysctl_lines(path.read_text().splitlines()):
        try:
            write_key(key, value, quiet=quiet)
        except LabError as e:
            if skip_global and not key.startswith("net."):
                say(f"skipping {key} from {path} (host-wide key)")
                continue
            if ignore:
                continue
            say(str(e))
            failures += 1
    return failures


def system_files() -> list[Path]:
    """sysctl --system order: by file name across the dirs, the first dir holding a name wins."""
    chosen: dict[str, Path] = {}
    for d in SYSCTL_DIRS:
        for f in sorted(Path(d).glob("*.conf")) if Path(d).is_dir() else []:
            chosen.setdefault(f.name, f)
    return [chosen[name] for name in sorted(chosen)] + [Path("/etc/sysctl.conf")]


def sysctl(args: Sequence[str]) -> int:
    quiet = False
    files: list[Path] = []
    system = load = False
    assignments: list[str] = []
    reads: list[str] = []
    it = iter(args)
    for arg in it:
        if arg in ("-q", "--quiet"):
            quiet = True
        elif arg in ("-e", "--ignore", "-w", "--write"):
            continue
        elif arg == "--system":
            system = True
        elif arg in ("-p", "--load"):
            load = True
        elif arg.startswith("--load="):
            files.append(Path(arg.split("=", 1)[1]))
        elif arg.startswith("-"):
            raise LabError(f"sysctl {arg}: option not emulated in the lab")
        elif load:
            files.append(Path(arg))
        elif "=" in arg:
            assignments.append(arg)
        else:
            reads.append(arg)
    if load and not files:
        files.append(Path("/etc/sysctl.conf"))
    failures = 0
    for f in system_files() if system else []:
        if f.is_file():
            failures += apply_file(f, quiet=quiet, skip_global=True)
    for f in files:
        if not f.is_file():
            raise LabError(f"sysctl -p {f}: no such file")
        failures += apply_file(f, quiet=quiet, skip_global=False)
    for a in assignments:
        key, _, value = a.partition("=")
        write_key(key.strip(), value.strip(), quiet=quiet)
    for key in reads:
        print(f"{key} = {sysctl_path(key).read_text().strip()}")
    return 1 if failures else 0


# ----------------------------------------------------------------------------- systemctl


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def _wg_quick(action: str, iface: str) -> int:
    return subprocess.run(["wg-quick", action, iface], check=False).returncode


def _wg_unit(verb: str, iface: str) -> int:
    """wg-quick@<iface>: what systemd would run for the unit, skipped when already in that state."""
    up = _link_exists(iface)
    if verb == "start":
        return 0 if up else _wg_quick("up", iface)
    if verb == "stop":
        return _wg_quick("down", iface) if up else 0
    if up and (status := _wg_quick("down", iface)):
        return status
    return _wg_quick("up", iface)


def unit_command(verb: str, unit: str) -> int:
    """start/stop/restart one unit the rendered cloud-config may name."""
    name = unit.removesuffix(".service")
    wg = _WG_UNIT.match(name)
    if wg:
        return _wg_unit(verb, wg.group(1))
    if name == "systemd-sysctl" and verb in ("start", "restart"):
        return sysctl(["--system"])
    if name == "nftables" and verb in ("start", "restart"):
        return subprocess.run(["nft", "-f", "/etc/nftables.conf"], check=False).returncode
    raise LabError(f"systemctl {verb} {unit}: not emulated in the netns lab")


def systemctl(args: Sequence[str]) -> int:
    flags = {a for a in args if a.startswith("-")}
    words = [a for a in args if not a.startswith("-")]
    if not words:
        raise LabError("systemctl without a command")
    verb, units = words[0], words[1:]
    now = "--now" in flags
    if verb == "daemon-reload":
        return 0
    if verb in ("enable", "disable") and not now:
        say(f"systemctl {verb} {' '.join(units)}: nothing to do until a reboot, and the lab does not reboot")
        return 0
    action = {"enable": "start", "disable": "stop", "reload-or-restart": "restart", "try-restart": "restart"}
    real_verb = action.get(verb, verb)
    if real_verb not in ("start", "stop", "restart"):
        raise LabError(f"systemctl {verb}: not emulated in the netns lab")
    status = 0
    for unit in units:
        status = unit_command(real_verb, unit) or status
    return status


# ----------------------------------------------------------------------------- packages


def packages(tool: str, args: Sequence[str]) -> int:
    words = [a for a in args if not a.startswith("-") and "=" not in a]
    if not words or words[0] in ("update", "upgrade", "dist-upgrade", "full-upgrade", "clean", "autoremove"):
        say(f"{tool} {' '.join(words[:1])}: skipped, the lab has no mirror and needs none")
        return 0
    if words[0] != "install":
        raise LabError(f"{tool} {words[0]}: not emulated in the netns lab")
    missing = [p for p in words[1:] if not _installed(p)]
    if missing:
        names = " ".join(missing)
        raise LabError(f"{tool} install: {names} not installed on the lab host (scripts/install-debs)")
    say(f"{tool} install {' '.join(words[1:])}: already installed on the lab host")
    return 0


def _installed(package: str) -> bool:
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True, check=False
    )
    return proc.returncode == 0 and "install ok installed" in proc.stdout


def main(argv: Sequence[str]) -> int:
    if not argv or argv[0] not in TOOLS:
        say(f"usage: python -m lab.netns.nodeshim {{{'|'.join(TOOLS)}}} ARGS...")
        return 2
    tool, args = argv[0], argv[1:]
    os.environ.pop("PYTHONPATH", None)  # what this shim runs (wg-quick and its hooks) gets a clean env
    if in_host_netns():
        say(f"{tool} shim refused: not inside a lab node's network namespace")
        return 1
    try:
        if tool == "systemctl":
            return systemctl(args)
        if tool == "sysctl":
            return sysctl(args)
        return packages(tool, args)
    except LabError as e:
        say(str(e))
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
