"""The live-update script: install a node's host configuration and apply it without dropping the mesh.

`apply_command()` is the one shell command line a live update runs on a node (over SSH from
`components/sync.py`, inside a namespace in the lab). It holds no secret: the payload arrives
on its standard input (or as a file named by its last argument). The payload is the node's
bundle (cloudinit/bundle.py: wg0.conf, nft table, sysctl file, metadata guard and unit, sshd
drop-in, admin key files, sudoers, login user) or a bare wg0.conf (a bundle of wg0.conf alone).
The script is cloudinit/scripts/wgmesh-apply.bash. It has two modes, run in this order on
every node whose bundle changed (key rotation: every peer learns a new public key before its
owner switches to it):

- `peers_only=True` (`--peers-only`): only the peer and route diff of wg0, whatever else
  changed. The node keeps running its own private key, address, MTU, port and FwMark, no file
  is installed and the host is left alone (the full apply does that). Nothing to do when wg0
  is down, or when a default route is involved (wg-quick's policy routing: the full apply
  restarts wg0).
- the full apply:

1. reads the bundle (refused: truncated, an unknown part, a file outside its part's directory) and checks
   every part before changing anything: wg0.conf (an [Interface] with a PrivateKey, parseable
   by `wg-quick strip`), both nft rulesets (`nft -c -f`), the sysctl lines, sudoers
   (`visudo -cf`), the sshd drop-in (`sshd -t` with the drop-in first) where those tools exist;
2. replaces each host file whose content or mode differs (temp file in the same directory, mv),
   removes key files of users the bundle no longer names, then reloads only what changed: the
   metadata guard (`nft -f`; daemon-reload and enable if its unit changed), the wgmesh table
   (`nft -f`, when wg0 is up), the RA guard then `sysctl -p` for the sysctl file, creates the
   login user if missing (useradd), reloads sshd if its drop-in changed. A failure here or in
   wg0 below puts every replaced file back and reloads those parts from them;
3. compares wg0.conf with the running wg0: a full restart (`systemctl restart wg-quick@wg0`, or
   `wg-quick down/up` without systemd) only when wg0 is down or its own Address, MTU,
   ListenPort or PrivateKey changed (or a default route is involved: wg-quick's policy rules);
4. otherwise the peer diff in place (not `wg syncconf`: it re-sends every peer and the
   listen port, and wireguard-go rebinds its socket, dropping packets between peers that did
   not change): new peers added, changed fields of changed peers set, removed peers removed,
   unchanged peers never touched (on a `wg` error the previous config's peers are put back);
   then the route diff wg-quick would have made: a route for each AllowedIP not yet routed on
   wg0, and the routes wg-quick added (proto boot on wg0, nothing else) whose AllowedIP is gone;
5. installs wg0.conf atomically (umask 077, temp file in /etc/wireguard, root-owned, mv);
6. prints one summary line, `wgmesh-apply: wg0 action=... key=value ...` (never a key):
   action=restart|sync, or in peers-only mode action=peers (`held=` names the node's own
   changes left for the full apply) or action=skip; the full apply adds `host=` naming the
   host parts it changed (guard-unit,guard,nft,sysctl,sudoers,keys,sshd,user), `-` for none.

Anything `wg` prints on stderr passes through a filter that replaces base64 keys, because
`wg` quotes a malformed config line verbatim.
"""

from __future__ import annotations

import shlex

from cloudinit.host import accept_ra_guard_script
from cloudinit.script_files import script_text
from cloudinit.wireguard import WG_INTERFACE

SUMMARY_PREFIX = "wgmesh-apply:"
SCRIPT_NAME = "wgmesh-apply"
PEERS_ONLY_FLAG = "--peers-only"

SCRIPT_FILE = "wgmesh-apply.bash"


def apply_script(interface: str = WG_INTERFACE) -> str:
    """The bash script text (no secret in it): reads the bundle (or a bare conf) on stdin or from `$1`."""
    return (
        script_text(SCRIPT_FILE)
        .replace("@IF@", shlex.quote(interface))
        .replace("@RA_GUARD@", accept_ra_guard_script().rstrip("\n"))
    )


def apply_command(*, sudo: bool = True, peers_only: bool = False, interface: str = WG_INTERFACE) -> str:
    """One command line running the script with bash (as root through `sudo -n` by default).

    The bundle (cloudinit.bundle.node_bundle) or a bare wg0.conf goes on the command's standard
    input, never on its command line.
    `peers_only`: the first phase of an update (peers learn new keys; see the module doc).
    """
    argv = ["bash", "-c", apply_script(interface), SCRIPT_NAME, *([PEERS_ONLY_FLAG] if peers_only else [])]
    if sudo:
        argv = ["sudo", "-n", "--", *argv]
    return shlex.join(argv)


def parse_summary(output: str) -> dict[str, str]:
    """The key=value fields of the script's summary line (the last `wgmesh-apply:` line)."""
    lines = [ln for ln in output.splitlines() if ln.startswith(SUMMARY_PREFIX)]
    if not lines:
        raise ValueError("no wgmesh-apply summary line in the output")
    words = lines[-1].removeprefix(SUMMARY_PREFIX).split()
    fields = dict(w.split("=", 1) for w in words[1:] if "=" in w)
    fields["interface"] = words[0]
    return fields


if (
    __name__ == "__main__"
):  # `python -m cloudinit.sync [--script | --peers-only]`: the command line (or the script) to run by hand
    import sys

    if sys.argv[1:] == ["--script"]:
        print(apply_script())
    else:
        print(apply_command(peers_only=sys.argv[1:] == [PEERS_ONLY_FLAG]))
