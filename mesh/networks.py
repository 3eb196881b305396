"""What a network in the stack file means: the ranges wgmesh refuses, and the ones it allocates.

Syntax is checked in mesh/spec.py; this module says whether a valid network may carry the
overlay or be routed behind a node. An overlay or routed subnet becomes kernel routes into
wg0 on every member, so one that covers a special-purpose range (loopback, link-local with
the cloud metadata service, multicast, ...) takes that range away from the host, and one that
holds a peer's public endpoint routes the tunnel's own packets into the tunnel.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

WG_OVERHEAD = 80  # IPv6 outer header (40) + UDP (8) + WireGuard (32): safe for either underlay
# RFC 8200 section 5: every link that carries IPv6 has an MTU of 1280 or more (Linux drops
# IPv6 from an interface below it), so wg0 with a `cidr6` address needs 1280.
IPV6_MIN_MTU = 1280
IPV6_MIN_UNDERLAY_MTU = IPV6_MIN_MTU + WG_OVERHEAD


@dataclass(frozen=True)
class Reserved:
    """A range no overlay or routed subnet may touch, with what it is and where that is written."""

    net: IPNetwork
    what: str

    def __str__(self) -> str:
        return f"{self.net} ({self.what})"


def _r(net: str, what: str) -> Reserved:
    return Reserved(ipaddress.ip_network(net), what)


# IANA IPv4 Special-Purpose Address Registry (RFC 6890 and its updates), the entries a host
# uses itself. Left out on purpose, as ordinary overlay space: the RFC 1918 private ranges;
# 100.64.0.0/10 (RFC 6598 shared space: carrier NAT, and Tailscale's overlay, fine unless a
# member sits behind a CGNAT handing out the same addresses, which cloud VMs do not);
# 198.18.0.0/15 (RFC 2544 benchmarking) and the RFC 5737 documentation /24s (labs use them).
SPECIAL_V4: tuple[Reserved, ...] = (
    _r("0.0.0.0/8", "'this network', RFC 791/RFC 1122: unspecified and default-route space"),
    _r("127.0.0.0/8", "loopback, RFC 1122"),
    # RFC 3927 link-local. 169.254.169.254 is the metadata service of AWS, GCP and Hetzner
    # (it serves the user data, so this node's WireGuard key); AWS also answers DNS on
    # 169.254.169.253 and NTP on 169.254.169.123.
    _r("169.254.0.0/16", "link-local, RFC 3927, with the cloud metadata service 169.254.169.254"),
    # RFC 6890 IETF protocol assignments: DS-Lite (RFC 6333), 464XLAT CLAT (RFC 7335: phones on
    # IPv6-only mobile networks hold 192.0.0.4), NAT64 discovery (RFC 7050).
    _r("192.0.0.0/24", "IETF protocol assignments, RFC 6890 (DS-Lite, 464XLAT on phones)"),
    _r("224.0.0.0/4", "multicast, RFC 5771"),
    # RFC 1112 reserved, with the limited broadcast 255.255.255.255 (RFC 919): Windows, macOS
    # and the phone apps route none of it.
    _r("240.0.0.0/4", "reserved, RFC 1112, with the broadcast address 255.255.255.255"),
)
# IANA IPv6 Special-Purpose Address Registry and RFC 4291. ULA (fc00::/7) is the recommended
# overlay space, and 2001:db8::/32 (documentation, RFC 3849) is left to labs as on IPv4.
SPECIAL_V6: tuple[Reserved, ...] = (
    # RFC 4291 reserved: unspecified ::, loopback ::1, IPv4-mapped ::ffff:0:0/96, IPv4-compatible.
    _r("::/8", "reserved by IETF, RFC 4291: unspecified ::, loopback ::1, IPv4-mapped"),
    _r("64:ff9b::/96", "NAT64 well-known prefix, RFC 6052: IPv6-only networks reach IPv4 through it"),
    _r("64:ff9b:1::/48", "local-use NAT64, RFC 8215"),
    _r("100::/64", "discard-only, RFC 6666"),
    _r("2001::/23", "IETF protocol assignments, RFC 2928 (Teredo, ORCHID)"),
    _r("2002::/16", "6to4, RFC 3056"),
    # AWS Nitro instances: IMDS at [fd00:ec2::254] (the AWS SDKs' IPv6 metadata endpoint),
    # Route 53 Resolver at fd00:ec2::253, Amazon Time Sync at fd00:ec2::123. Inside ULA space.
    _r("fd00:ec2::254/128", "AWS instance metadata service over IPv6"),
    _r("fd00:ec2::253/128", "AWS DNS resolver over IPv6"),
    _r("fd00:ec2::123/128", "Amazon Time Sync over IPv6"),
    _r("fe80::/10", "link-local, RFC 4291"),
    _r("fec0::/10", "deprecated site-local, RFC 3879"),
    _r("ff00::/8", "multicast, RFC 4291"),
)
DEFAULT_ROUTES = (ipaddress.IPv4Network("0.0.0.0/0"), ipaddress.IPv6Network("::/0"))


def special_clash(net: IPNetwork) -> str | None:
    """Why `net` may not carry an overlay or be routed behind a node; None when it may."""
    if net in DEFAULT_ROUTES:
        return "is a default route: internet egress is a node's `gateway: true`, not a network"
    touched = [r for r in (SPECIAL_V4 if net.version == 4 else SPECIAL_V6) if net.overlaps(r.net)]
    if not touched:
        return None
    r = max(touched, key=lambda r: r.net.prefixlen)  # the most specific: NAT64 rather than ::/8
    how = "is inside" if net.subnet_of(r.net) else "covers"  # type: ignore[arg-type]
    return f"{how} {r}"


# ----------------------------------------------------------------------------- site networks

# Each AWS region's VPC and each GCP region's subnetwork gets a /24 of its own, picked by
# hashing the site key within the first pool with a /24 clear of every mesh network. The
# pools are RFC 1918 space (AWS and GCP both recommend it for VPC ranges) away from the
# ranges people and tools usually pick: 10.0-10.x, 172.16/16, Docker's 172.17-172.31 bridges
# (AWS: "some AWS services use 172.17.0.0/16", so never a VPC there), 192.168.0-1.x home LANs.
SITE_POOLS: tuple[ipaddress.IPv4Network, ...] = (
    ipaddress.IPv4Network("10.200.0.0/16"),
    ipaddress.IPv4Network("172.29.0.0/16"),
    ipaddress.IPv4Network("192.168.128.0/17"),
)
SITE_PREFIX = 24


def _site_candidates(key: str, pool: ipaddress.IPv4Network) -> Iterator[ipaddress.IPv4Network]:
    """The pool's /24s in the order this site tries them: from a start hashed from the site key.

    The walk depends only on the key and the pool, so a site that fits its first pool keeps
    the network it always had (later pools are fallbacks, tried only when one is covered).
    """
    start = int.from_bytes(hashlib.sha256(f"wgmesh site\0{key}".encode()).digest()[:4], "big")
    count = 2 ** (SITE_PREFIX - pool.prefixlen)
    base, size = int(pool.network_address), 2 ** (32 - SITE_PREFIX)
    for i in range(count):
        yield ipaddress.IPv4Network((base + ((start + i) % count) * size, SITE_PREFIX))


def free_site_network(key: str, taken: Iterable[ipaddress.IPv4Network]) -> ipaddress.IPv4Network | None:
    """The site's /24: the first candidate clear of `taken`, pool by pool; None when none is free."""
    blocked = list(taken)
    for pool in SITE_POOLS:
        if any(pool.subnet_of(t) for t in blocked):
            continue  # wholly covered (a 10.0.0.0/8 overlay): nothing to walk
        for net in _site_candidates(key, pool):
            if not any(net.overlaps(t) for t in blocked):
                return net
    return None


def pools_text() -> str:
    return ", ".join(str(p) for p in SITE_POOLS)


# AWS VPCs and GCP subnetworks both accept /16 to /28 (GCP allows up to /29).
SITE_MIN_PREFIX, SITE_MAX_PREFIX = 16, 28


def hostable_subnet(subnets: Iterable[IPNetwork]) -> ipaddress.IPv4Network | None:
    """The first routed subnet a cloud can host as a VPC/subnetwork (private IPv4, /16 to /28)."""
    for net in subnets:
        fits = SITE_MIN_PREFIX <= net.prefixlen <= SITE_MAX_PREFIX
        if isinstance(net, ipaddress.IPv4Network) and net.is_private and fits:
            return net
    return None


def site_router_subnet(members: Iterable[Iterable[IPNetwork]]) -> ipaddress.IPv4Network | None:
    """A site's network when exactly one of its nodes routes a hostable subnet (given per node)."""
    hosted = [net for subnets in members if (net := hostable_subnet(subnets)) is not None]
    return hosted[0] if len(hosted) == 1 else None


def allocate_site_networks(
    routed: dict[str, ipaddress.IPv4Network | None], mesh_nets: Iterable[IPNetwork]
) -> dict[str, ipaddress.IPv4Network | None]:
    """Each site's network: its router's subnet, else a free hashed /24 (None: no pool is free).

    `routed` maps each site key, in order, to its router's subnet or None. Routed sites claim
    theirs first so the hashed picks steer around them.
    """
    v4 = [n for n in mesh_nets if isinstance(n, ipaddress.IPv4Network)]
    used = [net for net in routed.values() if net is not None]
    out: dict[str, ipaddress.IPv4Network | None] = {k: net for k, net in routed.items() if net is not None}
    for key, net in routed.items():
        if net is None:
            out[key] = picked = free_site_network(key, [*v4, *used])
            if picked is not None:
                used.append(picked)
    return {key: out[key] for key in routed}
