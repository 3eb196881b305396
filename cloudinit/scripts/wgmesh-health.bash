#!/bin/bash
# wgmesh-health: does this node have a live tunnel, at the full MTU, with every expected peer?
# Usage: wgmesh-health INTERFACE NODE MTU MAX_AGE WAIT [PEER...]
#   PEER is one argument "name public-key address4 address6-or-dash" (public data only).
# Waits up to WAIT seconds until every peer's latest handshake is at most MAX_AGE seconds old
# (a stale peer gets one ping a round: traffic makes WireGuard handshake), then pings every
# peer's overlay addresses at the full MTU with don't-fragment set, prints one table row per
# peer and a summary line, and exits 1 naming what is missing (on stderr too).
# cloudinit/healthcheck.py builds the command line; only the lines below this header run.
set -uo pipefail

IPV4_OVERHEAD=28 # IPv4 + ICMP headers: ping -s payload = MTU - 28
IPV6_OVERHEAD=48 # IPv6 + ICMPv6 headers

usage() {
  echo "usage: wgmesh-health INTERFACE NODE MTU MAX_AGE WAIT [PEER...]" >&2
  exit 2
}
number() { [[ $2 =~ ^[0-9]+$ ]] || { echo "wgmesh-health: $1 is not a number: '$2'" >&2 && exit 2; }; }

# Seconds since the peer's latest handshake; empty when it never completed one.
age_of() {
  local ts
  ts=$(wg show "$IF" latest-handshakes 2>/dev/null | awk -v k="$1" '$1 == k { print $2 }')
  if [ -n "$ts" ] && [ "$ts" != 0 ]; then echo $(($(date +%s) - ts)); fi
}
fresh() {
  local a
  a=$(age_of "$1")
  [ -n "$a" ] && [ "$a" -le "$MAX_AGE" ]
}

# Until every handshake is fresh or WAIT seconds have passed: one ping to each stale peer a round.
wait_for_handshakes() {
  local deadline=$(($(date +%s) + WAIT)) stale peer key addr
  while :; do
    stale=0
    for peer in "${PEERS[@]}"; do
      read -r _ key addr _ <<<"$peer"
      [ -n "$key" ] || continue
      if ! fresh "$key"; then
        stale=$((stale + 1))
        ping -c 1 -W 1 -q "$addr" >/dev/null 2>&1
      fi
    done
    [ "$stale" -eq 0 ] && return
    [ "$(date +%s)" -ge "$deadline" ] && return
    sleep 2
  done
}

mtu_ping() { # $1: address, $2: -4 or -6; a full-size packet, fragmentation forbidden
  local size=$((MTU - IPV4_OVERHEAD))
  [ "$2" = -6 ] && size=$((MTU - IPV6_OVERHEAD))
  ping "$2" -c 3 -W 2 -M "do" -s "$size" -q "$1" >/dev/null 2>&1
}

row() { printf '%-24s %-40s %-10s %-12s %s\n' "$@"; }
joined() { # $1: separator, then the items
  local sep=$1 out=$2
  shift 2
  for item; do out+="$sep$item"; done
  printf '%s' "$out"
}

# One table row for a peer ($1: a PEER argument); a peer with problems is added to `missing`.
check_peer() {
  local name key addr addr6 age shown ping_ok=ok shown_addr status=ok problems=()
  read -r name key addr addr6 <<<"$1"
  [ -n "$name" ] || return 0
  age=$(age_of "$key")
  if [ -z "$age" ]; then shown=never problems+=("no handshake"); else shown="${age}s ago"; fi
  if [ -n "$age" ] && [ "$age" -gt "$MAX_AGE" ]; then problems+=("handshake ${age}s old"); fi
  shown_addr=$addr
  if ! mtu_ping "$addr" -4; then ping_ok=FAIL problems+=("no $MTU-byte ping to $addr"); fi
  if [ "$addr6" != - ]; then
    shown_addr="$addr $addr6"
    if ! mtu_ping "$addr6" -6; then ping_ok=FAIL problems+=("no $MTU-byte ping to $addr6"); fi
  fi
  if [ "${#problems[@]}" -gt 0 ]; then
    status=$(joined ", " "${problems[@]}")
    missing+=("$name ($status)")
  fi
  row "$name" "$shown_addr" "$shown" "$ping_ok" "$status"
}

# The summary line; with something missing it goes to stderr too and the check fails.
verdict() {
  local line
  if [ "${#missing[@]}" -gt 0 ]; then
    line="wgmesh-health: $NODE: missing: $(joined "; " "${missing[@]}")"
    echo "$line"
    echo "$line" >&2
    exit 1
  fi
  echo "wgmesh-health: $NODE: ok, ${#PEERS[@]} peers"
}

main() {
  [ "$#" -ge 5 ] || usage
  IF=$1 NODE=$2 MTU=$3 MAX_AGE=$4 WAIT=$5
  shift 5
  number MTU "$MTU"
  number MAX_AGE "$MAX_AGE"
  number WAIT "$WAIT"
  PEERS=("$@")
  missing=()
  wait_for_handshakes
  row PEER ADDRESS HANDSHAKE "PING $MTU DF" STATUS
  for peer in "${PEERS[@]}"; do check_peer "$peer"; done
  verdict
}

main "$@"
