#!/bin/bash
# The IPv6 RA scenario of tests/artifacts/test_artifacts_ipv6_ra.py, run by it inside a fresh
# `unshare --net` namespace: never on a host of its own.
# Usage: ra-scenario.bash ACCEPT_RA LEARN SYSCTL CONF PYTHON RA_SENDER [GUARD_SCRIPT KEPT_FILE]
# Uplink up0 (veth to rt0, the cloud router) with IPv6 up, router link-local ready, one default
# route learned as LEARN says (kernel: an RA of router lifetime 1800 s; networkd: the `proto ra`
# route networkd installs itself; static: a static gateway, as on Hetzner); then the guard (when
# given, run as cloud-init's runcmd runs it: `sh -c GUARD_SCRIPT KEPT_FILE`); then the rendered
# sysctl file CONF with `SYSCTL -q -p`; then an RA of 600 s. Prints KEY=value lines.
set -euo pipefail
ACCEPT_RA=$1 LEARN=$2 SYSCTL=$3 CONF=$4 PYTHON=$5 RA_SENDER=$6 GUARD=${7:-} KEPT=${8:-}

wait_for() { for _ in $(seq 50); do eval "$1" && return 0; sleep 0.1; done; return 1; }

uplink() {
  ip link set lo up
  ip link add up0 type veth peer name rt0
  sysctl -qw net.ipv6.conf.up0.accept_dad=0 net.ipv6.conf.rt0.accept_dad=0
  sysctl -qw "net.ipv6.conf.up0.accept_ra=$ACCEPT_RA" net.ipv6.conf.rt0.accept_ra=0
  ip link set up0 up
  ip link set rt0 up
  wait_for 'ip -6 addr show dev rt0 scope link | grep -q fe80'
  wait_for 'ip -6 addr show dev up0 scope link | grep -q fe80'
}

learn() {
  case $LEARN in
    kernel)
      "$PYTHON" "$RA_SENDER" rt0 1800
      wait_for 'ip -6 route show default dev up0 | grep -q proto.ra'
      ;;
    # systemd-networkd installs the route it learned from an RA itself, over netlink, as `proto ra`.
    networkd) ip -6 route add default via fe80::1 dev up0 proto ra ;;
    # Hetzner: a static IPv6 from the metadata network-config, gateway fe80::1 (cloud-init renders it).
    static) ip -6 route add default via fe80::1 dev up0 proto static ;;
    *) echo "ra-scenario: unknown LEARN: $LEARN" >&2 && exit 2 ;;
  esac
}

uplink
learn
echo "BEFORE=$(ip -6 route show default dev up0)"
if [ -n "$GUARD" ]; then sh -c "$GUARD" "$KEPT"; fi
"$SYSCTL" -q -p "$CONF"
echo "AFTER=$(ip -6 route show default dev up0)"
echo "ACCEPT_RA=$(cat /proc/sys/net/ipv6/conf/up0/accept_ra)"
"$PYTHON" "$RA_SENDER" rt0 600
wait_for 'ip -6 route show default dev up0 | grep -q "expires [1-5]\?[0-9]\?[0-9]sec"' || true
echo "REFRESHED=$(ip -6 route show default dev up0)"
