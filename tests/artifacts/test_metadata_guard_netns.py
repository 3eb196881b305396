"""The rendered metadata guard in a real kernel: non-root NTP to the metadata address gets through.

Each probe runs in a throwaway network namespace (`unshare --net`, gone with the process):
169.254.169.254 on its loopback, the guard loaded from `metadata_guard_ruleset()` with the
real `nft`, listeners as root, and clients as root or as uid 65534 (`setpriv`), the way
systemd-timesyncd and chronyd send NTP after dropping root. Defect: the guard rejected that
NTP, and on GCP the metadata server is the VM's time source. The twin cuts the NTP rule and
must then see the packet rejected, so the check proves the rule, not the setup.
"""

from __future__ import annotations

import json
import sys

import pytest

from cloudinit.host import METADATA_NTP_COMMENT, METADATA_V4, metadata_guard_ruleset

from .artifact_helpers import need_root, need_tool, run

pytestmark = pytest.mark.netns  # root and throwaway namespaces

# Inside the namespace: bring lo up with the metadata address, load the guard, then per probe a
# root listener and a client (root or nobody). Prints {"probe": "got" | "none" | error name}.
PROBE = r"""
import json, socket, subprocess, sys
guard, nobody = sys.argv[1], sys.argv[2:]
ip = "169.254.169.254"
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
subprocess.run(["ip", "addr", "add", ip + "/32", "dev", "lo"], check=True)
subprocess.run(["nft", "-f", "-"], input=guard, text=True, check=True)
CLIENT = '''
import socket, sys
kind, ip, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    if kind == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b"ntp?", (ip, port))
    else:
        socket.create_connection((ip, port), timeout=2).close()
    print("sent")
except OSError as e:
    print(type(e).__name__)
'''
out = {}
for kind, port in (("udp", 123), ("tcp", 80)):
    for who in ("root", "nobody"):
        if kind == "udp":
            srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); srv.bind((ip, port)); srv.settimeout(1)
        else:
            srv = socket.socket(); srv.bind((ip, port)); srv.listen(1); srv.settimeout(1)
        argv = ([*nobody] if who == "nobody" else []) + [sys.executable, "-c", CLIENT, kind, ip, str(port)]
        client = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
        try:
            got = srv.recvfrom(64)[0] == b"ntp?" if kind == "udp" else bool(srv.accept())
        except TimeoutError:
            got = False
        srv.close()
        out[f"{kind}{port}-{who}"] = "got" if got else client
print(json.dumps(out))
"""
NOBODY = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]


def probe(ruleset: str) -> dict[str, str]:
    need_root()
    for tool in ("unshare", "nft", "ip", "setpriv"):
        need_tool(tool)
    proc = run(["unshare", "--net", "--", sys.executable, "-c", PROBE, ruleset, *NOBODY])
    assert proc.returncode == 0, proc.stderr
    result: dict[str, str] = json.loads(proc.stdout)
    return result


def without_ntp_rule(ruleset: str) -> str:
    kept = [line for line in ruleset.splitlines() if METADATA_NTP_COMMENT not in line]
    assert len(kept) == len(ruleset.splitlines()) - 1
    return "\n".join(kept) + "\n"


@pytest.fixture(scope="module")
def guarded() -> dict[str, str]:
    return probe(metadata_guard_ruleset())


def test_non_root_ntp_to_the_metadata_server_gets_through(guarded: dict[str, str]) -> None:
    assert guarded["udp123-nobody"] == "got"
    assert guarded["udp123-root"] == "got"


def test_non_root_http_to_the_metadata_server_is_still_refused(guarded: dict[str, str]) -> None:
    assert guarded["tcp80-root"] == "got"
    assert guarded["tcp80-nobody"] != "got"  # refused at once (reject), never accepted


def test_without_the_ntp_rule_non_root_ntp_is_rejected() -> None:
    """The twin: today's guard (no NTP rule) drops the same datagram, so the check can fail."""
    result = probe(without_ntp_rule(metadata_guard_ruleset()))
    assert result["udp123-nobody"] != "got"
    assert result["udp123-root"] == "got"
    assert str(METADATA_V4) == "169.254.169.254"  # the address the probe listens on
