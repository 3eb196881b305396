"""The post-update health check a live node runs: fresh handshakes and full-MTU pings to every peer.

`health_script()` renders a bash script for one node from its expected peers (names, public
keys, overlay addresses: nothing secret). It waits until every peer's latest handshake is
younger than `max_age` seconds (pinging the peer once a round, which makes WireGuard
handshake), then pings every peer's overlay address at the full tunnel MTU with
don't-fragment set, prints one table row per peer, and exits 1 with a one-line list of what
is missing. A Pulumi `remote.Command` runs it after every sync (components/health.py), so a
broken update fails `pulumi up` with that table.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from cloudinit.wireguard import WG_INTERFACE
from mesh.plan_types import MeshPlan

IPV4_OVERHEAD = 28  # IPv4 header + ICMP header: ping -s payload = MTU - 28
IPV6_OVERHEAD = 48
MAX_HANDSHAKE_AGE = 180  # WireGuard re-handshakes every 2 minutes on an active tunnel
DEFAULT_WAIT = 150  # seconds to wait for handshakes after a sync (a new VM may still boot)
SUMMARY_PREFIX = "wgmesh-health:"
SCRIPT_NAME = "wgmesh-health"


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


_SCRIPT = r"""set -uo pipefail
IF=@IF@
NODE=@NODE@
MTU=@MTU@
MAX_AGE=@MAX_AGE@
DEADLINE=$(( $(date +%s) + @WAIT@ ))
# name public-key address4 address6-or-dash, one peer a line
PEERS=@PEERS@

# Seconds since the peer's latest handshake; empty when it never completed one.
age_of() {
  local ts
  ts=$(wg show "$IF" latest-handshakes 2>/dev/null | awk -v k="$1" '$1 == k { print $2 }')
  if [ -n "$ts" ] && [ "$ts" != 0 ]; then echo $(( $(date +%s) - ts )); fi
}
fresh() { local a; a=$(age_of "$1"); [ -n "$a" ] && [ "$a" -le "$MAX_AGE" ]; }

while :; do
  stale=0
  while read -r name key addr addr6; do
    [ -n "$name" ] || continue
    if ! fresh "$key"; then
      stale=$((stale + 1))
      ping -c 1 -W 1 -q "$addr" >/dev/null 2>&1  # traffic makes WireGuard handshake
    fi
  done <<<"$PEERS"
  [ "$stale" -eq 0 ] && break
  [ "$(date +%s)" -ge "$DEADLINE" ] && break
  sleep 2
done

mtu_ping() {  # $1: address, $2: -4 or -6; full-size packet, fragmentation forbidden
  local size=$((MTU - @V4@))
  [ "$2" = -6 ] && size=$((MTU - @V6@))
  ping "$2" -c 3 -W 2 -M do -s "$size" -q "$1" >/dev/null 2>&1
}

missing=()
printf '%-24s %-40s %-10s %-12s %s\n' PEER ADDRESS HANDSHAKE "PING $MTU DF" STATUS
while read -r name key addr addr6; do
  [ -n "$name" ] || continue
  problems=()
  age=$(age_of "$key")
  if [ -z "$age" ]; then shown=never; problems+=("no handshake"); else shown="${age}s ago"; fi
  if [ -n "$age" ] && [ "$age" -gt "$MAX_AGE" ]; then problems+=("handshake ${age}s old"); fi
  ping_ok=ok
  shown_addr=$addr
  if ! mtu_ping "$addr" -4; then ping_ok=FAIL; problems+=("no $MTU-byte ping to $addr"); fi
  if [ "$addr6" != - ]; then
    shown_addr="$addr $addr6"
    if ! mtu_ping "$addr6" -6; then ping_ok=FAIL; problems+=("no $MTU-byte ping to $addr6"); fi
  fi
  if [ "${#problems[@]}" -eq 0 ]; then status=ok; else
    status=$(IFS=';'; printf '%s' "${problems[*]}")
    missing+=("$name (${status//;/, })")
  fi
  printf '%-24s %-40s %-10s %-12s %s\n' "$name" "$shown_addr" "$shown" "$ping_ok" "${status//;/, }"
done <<<"$PEERS"

if [ "${#missing[@]}" -gt 0 ]; then
  line="wgmesh-health: $NODE: missing: $(IFS=';'; printf '%s' "${missing[*]}")"
  echo "${line//;/; }"
  echo "${line//;/; }" >&2
  exit 1
fi
echo "wgmesh-health: $NODE: ok, $(grep -c . <<<"$PEERS") peers"
"""


def health_script(
    node: str,
    peers: Sequence[ExpectedPeer],
    mtu: int,
    *,
    max_age: int = MAX_HANDSHAKE_AGE,
    wait: int = DEFAULT_WAIT,
    interface: str = WG_INTERFACE,
) -> str:
    """The bash script for one node (public data only)."""
    lines = "\n".join(f"{p.name} {p.public_key} {p.address} {p.address6 or '-'}" for p in peers)
    values = {
        "@IF@": shlex.quote(interface),
        "@NODE@": shlex.quote(node),
        "@MTU@": str(int(mtu)),
        "@MAX_AGE@": str(int(max_age)),
        "@WAIT@": str(int(wait)),
        "@PEERS@": shlex.quote(lines),
        "@V4@": str(IPV4_OVERHEAD),
        "@V6@": str(IPV6_OVERHEAD),
    }
    script = _SCRIPT
    for marker, value in values.items():
        script = script.replace(marker, value)
    return script


def health_command(
    node: str, peers: Sequence[ExpectedPeer], mtu: int, *, sudo: bool = True, wait: int = DEFAULT_WAIT
) -> str:
    """One command line running the health script with bash (as root through `sudo -n` by default)."""
    argv = ["bash", "-c", health_script(node, peers, mtu, wait=wait), SCRIPT_NAME]
    if sudo:
        argv = ["sudo", "-n", "--", *argv]
    return shlex.join(argv)
