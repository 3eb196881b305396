#!/bin/sh
# wgmesh-ra-guard: turning IPv6 forwarding on must not cost an uplink its RA-learned default route.
# Usage: sh -c "<this script>" SYSCTL_FILE   ($0 names the sysctl.d file it writes)
# For each interface holding an IPv6 default route learned from a Router Advertisement whose RAs
# the kernel handles (accept_ra 1): raise accept_ra to 2 now, and keep the same key, "-" prefixed
# (an interface gone at a later boot is no error), in SYSCTL_FILE for later boots. Interfaces at 0
# (systemd-networkd handles RAs itself) or 2 are left alone. cloudinit/host.py says why.
# WGMESH_ROOT (tests only): /proc is read and written below this directory.

# The interfaces holding an RA-learned IPv6 default route, one a line.
ra_default_devices() {
    ip -6 -o route show default proto ra 2>/dev/null |
        awk '{for (i = 1; i < NF; i++) if ($i == "dev") print $(i + 1)}' | sort -u
}

# Raise $1 from accept_ra 1 to 2 and print its sysctl.d line (a dot in a name is a / in a key).
keep_ra_routes() {
    f="${WGMESH_ROOT:-}/proc/sys/net/ipv6/conf/$1/accept_ra"
    [ "$(cat "$f" 2>/dev/null)" = 1 ] || return 0
    echo 2 >"$f"
    printf '%s\n' "-net.ipv6.conf.$(echo "$1" | tr . /).accept_ra = 2"
}

conf=$(for dev in $(ra_default_devices); do keep_ra_routes "$dev"; done)
[ -z "$conf" ] || printf '# wgmesh: keep RA default routes with forwarding on\n%s\n' "$conf" >"$0"
