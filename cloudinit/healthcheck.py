"""The post-update health check a live node runs: fresh handshakes and full-MTU pings to every peer.

The script is cloudinit/scripts/wgmesh-health.bash; `health_command()` runs it for one node
with its expected peers as arguments (names, public keys, overlay addresses: nothing secret).
It waits until every peer's latest handshake is younger than `max_age` seconds (pinging the
peer once a round, which makes WireGuard handshake), then pings every peer's overlay address
at the full tunnel MTU with don't-fragment set, prints one table row per peer, and exits 1
with a one-line list of what is missing. A Pulumi `remote.Command` runs it after every sync
(components/health.py), so a broken update fails `pulumi up` with that table.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from cloudinit.script_files import script_body
from cloudinit.wireguard import WG_INTERFACE
from mesh.plan_types import MeshPlan

MAX_HANDSHAKE_AGE = 180  # WireGuard re-handshakes every 2 minutes on an active tunnel
DEFAULT_WAIT = 150  # seconds to wait for handshakes after a sync (a new VM may still boot)
SUMMARY_PREFIX = "wgmesh-health:"
SCRIPT_NAME = "wgmesh-health"
SCRIPT_FILE = "wgmesh-health.bash"


@dataclass(frozen=True)
class ExpectedPeer:
    """A peer the node must have a live tunnel with (roaming clients are never expected)."""

    name: str
    public_key: str
    address: str  # overlay IPv4
    address6: str | None = None


def expected_peers(plan: MeshPlan, node: str, public_keys: dict[str, str]) -> tuple[ExpectedPeer, ...]:
    """The node peers of `node` in its wg0.conf, with the keys they are known by."""
    peers = []
    for peer in plan.node(node).iface.peers:
        if peer.kind != "node":
            continue
        iface = plan.interface(peer.name)
        a6 = iface.address6
        peers.append(
            ExpectedPeer(peer.name, public_keys[peer.name], str(iface.address.ip), str(a6.ip) if a6 else None)
        )
    return tuple(peers)


def health_script() -> str:
    """The bash script (cloudinit/scripts/wgmesh-health.bash without its header): no per-node value in it."""
    return script_body(SCRIPT_FILE)


def health_args(
    node: str,
    peers: Sequence[ExpectedPeer],
    mtu: int,
    *,
    max_age: int = MAX_HANDSHAKE_AGE,
    wait: int = DEFAULT_WAIT,
    interface: str = WG_INTERFACE,
) -> list[str]:
    """The script's arguments for one node: INTERFACE NODE MTU MAX_AGE WAIT, then one per peer."""
    return [
        interface,
        node,
        str(int(mtu)),
        str(int(max_age)),
        str(int(wait)),
        *(f"{p.name} {p.public_key} {p.address} {p.address6 or '-'}" for p in peers),
    ]


def health_argv(
    node: str,
    peers: Sequence[ExpectedPeer],
    mtu: int,
    *,
    sudo: bool = True,
    max_age: int = MAX_HANDSHAKE_AGE,
    wait: int = DEFAULT_WAIT,
    interface: str = WG_INTERFACE,
) -> list[str]:
    """`bash -c <script> wgmesh-health <args>` (as root through `sudo -n` by default)."""
    args = health_args(node, peers, mtu, max_age=max_age, wait=wait, interface=interface)
    argv = ["bash", "-c", health_script(), SCRIPT_NAME, *args]
    return ["sudo", "-n", "--", *argv] if sudo else argv


def health_command(
    node: str, peers: Sequence[ExpectedPeer], mtu: int, *, sudo: bool = True, wait: int = DEFAULT_WAIT
) -> str:
    """One command line running the health script with bash (public data only)."""
    return shlex.join(health_argv(node, peers, mtu, sudo=sudo, wait=wait))
