"""The lab's network namespaces and links: `ip`, and a record in the state before each is made.

Both drivers create their namespaces through `add_namespace` (name and inode recorded) and
remove them through `remove_network`, which touches only what the state lists and, for a
namespace, only while its inode is still the one the lab made.
"""

from __future__ import annotations

import os
import subprocess

from lab.core.errors import LabError
from lab.core.proc import NETNS_DIR, run
from lab.core.state import LabState, LinkRecord, NamespaceRecord


def ip(netns: str | None, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`ip [-n netns] args...`; LabError naming the namespace on failure (when `check`)."""
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    return run(argv, what=f"{netns or 'host'}: ip {' '.join(args[:5])}", check=check)


def existing_namespaces() -> set[str]:
    """Names of every named network namespace on the machine (/run/netns)."""
    return {p.name for p in NETNS_DIR.iterdir()} if NETNS_DIR.is_dir() else set()


def namespace_inode(name: str) -> int | None:
    try:
        return os.stat(NETNS_DIR / name).st_ino
    except FileNotFoundError:
        return None


def add_namespace(state: LabState, name: str) -> None:
    """Record, create, record the inode, bring lo up: an interruption at any point leaves it owned.

    LabError if a namespace of that name exists and the state does not list it (someone else's).
    """
    if namespace_inode(name) is not None and not state.owns(name):
        raise LabError(f"network namespace {name} exists but this lab's state does not list it")
    record = NamespaceRecord(name, None)
    state.namespaces.append(record)
    state.save()
    run(["ip", "netns", "add", name], what=f"create namespace {name}")
    record.inode = namespace_inode(name)
    state.save()
    ip(name, "link", "set", "lo", "up")


def record_link(state: LabState, netns: str, name: str) -> None:
    """Note a link about to be added in `netns`, so `remove_network` deletes it first."""
    state.links.append(LinkRecord(netns, name))
    state.save()


def owned_namespaces(state: LabState) -> tuple[dict[str, int], list[str]]:
    """({name: inode} of the state's namespaces that still exist and are the ones we made,
    [names that exist but were replaced by someone else])."""
    owned: dict[str, int] = {}
    replaced: list[str] = []
    for record in state.namespaces:
        inode = namespace_inode(record.name)
        if inode is None:
            continue
        if record.inode is None or record.inode == inode:
            owned[record.name] = inode
        else:
            replaced.append(record.name)
    return owned, replaced


def remove_network(state: LabState) -> list[str]:
    """Delete the recorded links, then the recorded namespaces (newest first) that are still ours;
    return what could not be removed or was left alone."""
    owned, replaced = owned_namespaces(state)
    problems = [f"namespace {name} was replaced by someone else: left alone" for name in replaced]
    for link in reversed(state.links):
        if (
            link.namespace in owned
            and ip(link.namespace, "link", "show", link.name, check=False).returncode == 0
        ):
            proc = ip(link.namespace, "link", "del", link.name, check=False)
            if proc.returncode != 0:
                problems.append(f"link {link.name} in {link.namespace} could not be deleted")
    for record in reversed(state.namespaces):
        if record.name not in owned:
            continue
        run(["ip", "netns", "delete", record.name], check=False)
        if namespace_inode(record.name) is not None:
            problems.append(f"namespace {record.name} could not be deleted")
    return problems
