"""A node's whole host configuration as one text payload: what every apply installs.

First boot writes these files through cloud-init's write_files (cloudinit/render.py takes
them from `host_files`); every later apply gets the same files in a bundle on the apply
script's standard input (cloudinit/sync.py). One function renders both, so a fresh VM and a
running one can never be told different things.

Format (version 1), one item a line, easy to read in bash:

    wgmesh-bundle 1
    ra-guard 0|1                       # run the IPv6 RA guard before the sysctl file
    user <name>                        # a login user the apply makes sure exists
    file <part> <path> <mode> <base64> # a whole file, root-owned
    end <number of file lines>         # a truncated payload is refused

Parts: wg, nft, sysctl, guard, guard-unit, sshd, keys, sudoers. The text holds the node's
private key and PSKs: it is a secret (pass it as a Pulumi secret, never log it).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from cloudinit import access, host
from cloudinit.wireguard import WG_INTERFACE
from mesh.plan_types import MeshPlan

BUNDLE_HEADER = "wgmesh-bundle 1"
WG_CONF_PATH = f"/etc/wireguard/{WG_INTERFACE}.conf"


@dataclass(frozen=True)
class HostFile:
    """One file of a node's host configuration; `part` tells the apply what to reload for it."""

    part: str
    path: str
    mode: str  # "0600": a string, as cloud-init's write_files wants it
    content: str

    def __repr__(self) -> str:  # wg0.conf holds the private key: never show content
        return f"HostFile({self.part}, {self.path}, {self.mode}, {len(self.content)} chars)"


def ipv6_forwarding(plan: MeshPlan) -> bool:
    """A dual-stack overlay turns IPv6 forwarding on: the RA guard must run first."""
    return plan.spec.mesh.cidr6 is not None


def host_files(
    plan: MeshPlan, name: str, wg_conf: str, *, ssh_public_keys: Sequence[str] | None = None
) -> tuple[HostFile, ...]:
    """Every file wgmesh owns on node `name`, in the order first boot writes them.

    `ssh_public_keys`: the admin keys to install instead of `sshPublicKeys` (a two-phase
    rotation first installs old and new keys, then the new ones only); None: the stack's.
    """
    node = plan.node(name)
    files = [
        HostFile("wg", WG_CONF_PATH, "0600", wg_conf),
        HostFile("nft", host.NFT_PATH, "0600", host.nft_ruleset(node)),
        HostFile("sysctl", host.SYSCTL_PATH, "0644", host.sysctl_conf(ipv6=ipv6_forwarding(plan))),
        HostFile("guard", host.METADATA_GUARD_PATH, "0644", host.metadata_guard_ruleset()),
        HostFile("guard-unit", host.METADATA_GUARD_UNIT_PATH, "0644", host.metadata_guard_unit()),
        HostFile("sshd", access.SSHD_DROPIN_PATH, "0644", access.sshd_dropin()),
        HostFile("sudoers", access.SUDOERS_PATH, "0440", access.sudoers(plan, name)),
    ]
    keys = access.authorized_keys(
        plan.spec.mesh.ssh_public_keys if ssh_public_keys is None else ssh_public_keys
    )
    users = access.login_users(plan, name)
    files += [HostFile("keys", f"{access.KEYS_DIR}/{user}", "0644", keys) for user in users]
    return tuple(files)


def node_bundle(
    plan: MeshPlan, name: str, wg_conf: str, *, ssh_public_keys: Sequence[str] | None = None
) -> str:
    """The payload of node `name`'s apply command (secret: it holds wg0.conf).

    `ssh_public_keys`: see `host_files` (the default equals what first boot writes).
    """
    user = access.created_user(plan, name)
    files = host_files(plan, name, wg_conf, ssh_public_keys=ssh_public_keys)
    return encode_bundle(files, ra_guard=ipv6_forwarding(plan), users=(user,) if user else ())


def encode_bundle(files: Sequence[HostFile], *, ra_guard: bool, users: Sequence[str] = ()) -> str:
    """The bundle text for these files (node_bundle's format; tests build broken ones with it)."""
    lines = [BUNDLE_HEADER, f"ra-guard {int(ra_guard)}", *(f"user {u}" for u in users)]
    for f in files:
        lines.append(f"file {f.part} {f.path} {f.mode} {base64.b64encode(f.content.encode()).decode()}")
    lines.append(f"end {len(files)}")
    return "\n".join(lines) + "\n"


def bundle_digest(text: str) -> str:
    """sha256 hex of a bundle: a non-secret trigger that changes exactly when the bundle does."""
    return hashlib.sha256(text.encode()).hexdigest()


def parse_bundle(text: str) -> tuple[dict[str, str], tuple[HostFile, ...]]:
    """(settings, files) of a bundle: for tests and tools; ValueError on anything malformed."""
    lines = text.splitlines()
    if not lines or lines[0] != BUNDLE_HEADER:
        raise ValueError("not a wgmesh bundle (version 1)")
    settings: dict[str, str] = {}
    files: list[HostFile] = []
    users: list[str] = []
    for line in lines[1:]:
        word, _, rest = line.partition(" ")
        if word == "file":
            part, path, mode, data = rest.split(" ")
            files.append(HostFile(part, path, mode, base64.b64decode(data, validate=True).decode()))
        elif word == "user":
            users.append(rest)
        elif word in ("ra-guard", "end"):
            settings[word] = rest
        else:
            raise ValueError(f"unknown bundle line {word!r}")
    if settings.get("end") != str(len(files)):
        raise ValueError("truncated bundle")
    settings["users"] = ",".join(users)
    return settings, tuple(files)
