"""The #cloud-config document: built as plain Python data, written out by PyYAML.

The logic lives in files (wg0.conf, the nft table, the sysctl drop-in, the metadata guard and
its unit); `runcmd` is a few recognisable steps so the netns lab can replay them inside a node's
namespaces: install the tools if missing, load the metadata guard and enable its unit for later
boots, apply the sysctl file, start wg-quick@wg0.
"""

from __future__ import annotations

import base64
import gzip
from collections.abc import Sequence
from typing import Any

import yaml

from cloudinit import bundle
from cloudinit.access import SUDO_RULE
from cloudinit.bundle import HostFile
from cloudinit.host import (
    SYSCTL_PATH,
    accept_ra_guard_step,
    metadata_guard_enable_step,
    metadata_guard_load_step,
)
from cloudinit.wireguard import WG_INTERFACE

HEADER = "#cloud-config\n"
WG_CONF_PATH = bundle.WG_CONF_PATH
GZIP_BASE64 = "gz+b64"  # cloud-init write_files encoding: gzip, then base64

# Images for the lab have no mirror but already carry the tools: install only what is missing.
INSTALL_STEP = (
    "sh",
    "-c",
    "command -v wg >/dev/null && command -v nft >/dev/null || "
    "{ apt-get update -q && DEBIAN_FRONTEND=noninteractive "
    "apt-get install -y -q --no-install-recommends wireguard-tools nftables; }",
)
# This file only, never `sysctl --system`: the lab runs this step inside network namespaces.
SYSCTL_STEP = ("sysctl", "-p", SYSCTL_PATH)
WG_UP_STEP = ("systemctl", "enable", "--now", f"wg-quick@{WG_INTERFACE}")
# Right after the install step (it needs nft): non-root loses the metadata service before wg0 is up.
GUARD_LOAD_STEP = metadata_guard_load_step()
GUARD_ENABLE_STEP = metadata_guard_enable_step()
# Only with IPv6 forwarding (cidr6): keeps a kernel-learned IPv6 default route (host.py says why).
ACCEPT_RA_STEP = accept_ra_guard_step()
RUNCMD: tuple[tuple[str, ...], ...] = (
    INSTALL_STEP,
    GUARD_LOAD_STEP,
    GUARD_ENABLE_STEP,
    SYSCTL_STEP,
    WG_UP_STEP,
)


class _FlowList(list[str]):
    """A runcmd argv, written on one line: `- [sysctl, -p, /etc/sysctl.d/90-wgmesh.conf]`."""


# libyaml's emitter when PyYAML has it: the same bytes as the pure-Python one (checked on every
# example stack) at a fraction of the time, which matters when a big mesh renders N documents
# that each hold N peers.
_BaseDumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_BaseDumper):  # type: ignore[valid-type,misc]
    """SafeDumper that writes multi-line strings as `|` blocks and argv lists on one line."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _represent_flow_list(dumper: yaml.SafeDumper, value: _FlowList) -> yaml.Node:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=True)


_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(_FlowList, _represent_flow_list)


def write_file(path: str, content: str, permissions: str, *, compress: bool = False) -> dict[str, str]:
    """One write_files entry; `permissions` stays a string ('0600'), never the integer 384.

    `compress`: the content as cloud-init's `encoding: gz+b64` (gzip, then base64), for
    clouds that take only plain user data and a file too big to fit it as text.
    """
    entry = {"path": path, "owner": "root:root", "permissions": permissions}
    if compress:
        packed = gzip.compress(content.encode(), compresslevel=9, mtime=0)  # mtime=0: same bytes
        entry.update(encoding=GZIP_BASE64, content=base64.b64encode(packed).decode())
    else:
        entry["content"] = content
    return entry


def node_cloud_config(
    *,
    hostname: str,
    files: Sequence[HostFile],
    create_user: str | None = None,
    compress_wg_conf: bool = False,
    ipv6_forwarding: bool = False,
) -> dict[str, Any]:
    """The node's cloud-config as data (write_files run before runcmd in cloud-init).

    `files`: every host file (cloudinit.bundle.host_files, the same ones each apply installs).
    `create_user`: `sshUser`, created next to the image's default user with passwordless sudo
    (cloud-init users-groups; the list must name `default` to keep the default user).
    Admin keys are not cloud-init's `ssh_authorized_keys`: they are in `files` (cloudinit/access.py).
    `compress_wg_conf`: wg0.conf (the part that grows with the mesh) as gz+b64, not text.
    `ipv6_forwarding`: the sysctl file turns it on, so the RA guard runs just before it.
    """
    doc: dict[str, Any] = {"hostname": hostname}
    if create_user:
        # https://cloudinit.readthedocs.io/en/latest/reference/modules.html#users-and-groups
        doc["users"] = [
            "default",
            {"name": create_user, "sudo": SUDO_RULE, "shell": "/bin/bash", "lock_passwd": True},
        ]
    doc["write_files"] = [
        write_file(f.path, f.content, f.mode, compress=compress_wg_conf and f.part == "wg") for f in files
    ]
    steps = list(RUNCMD)
    if ipv6_forwarding:
        steps.insert(steps.index(SYSCTL_STEP), ACCEPT_RA_STEP)
    doc["runcmd"] = [_FlowList(step) for step in steps]
    return doc


def dump_cloud_config(doc: dict[str, Any]) -> str:
    """`#cloud-config` + YAML; stable key order and no line folding, so output is deterministic."""
    body = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1 << 16)
    return HEADER + body
