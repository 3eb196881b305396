"""Send one IPv6 Router Advertisement out of an interface (stdlib only, no radvd or scapy).

Usage: python ra_sender.py DEV ROUTER_LIFETIME_SECONDS

A raw ICMPv6 socket: the kernel fills in the checksum and the link-local source; hop limit 255
as RFC 4861 requires, to ff02::1. Only ever run inside a throwaway network namespace.
"""

from __future__ import annotations

import socket
import struct
import sys

ND_ROUTER_ADVERT = 134
ALL_NODES = "ff02::1"


def router_advertisement(lifetime: int) -> bytes:
    """Type, code, checksum (kernel), cur hop limit, flags, router lifetime, reachable, retrans."""
    return struct.pack("!BBHBBHII", ND_ROUTER_ADVERT, 0, 0, 64, 0, lifetime, 0, 0)


def send(dev: str, lifetime: int) -> None:
    index = socket.if_nametoindex(dev)
    with socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        s.sendto(router_advertisement(lifetime), (ALL_NODES, 0, 0, index))


if __name__ == "__main__":
    send(sys.argv[1], int(sys.argv[2]))
