"""The #cloud-config document: built as plain Python data, written out by PyYAML.

The logic lives in files (wg0.conf, the nft table, the sysctl drop-in); `runcmd` is three
recognisable steps so the netns lab can replay them inside a node's namespaces:
install the tools if missing, apply the sysctl file, start wg-quick@wg0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from cloudinit.host import NFT_PATH, SYSCTL_PATH
from cloudinit.wireguard import WG_INTERFACE

HEADER = "#cloud-config\n"
WG_CONF_PATH = f"/etc/wireguard/{WG_INTERFACE}.conf"

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
RUNCMD: tuple[tuple[str, ...], ...] = (INSTALL_STEP, SYSCTL_STEP, WG_UP_STEP)


class _FlowList(list[str]):
    """A runcmd argv, written on one line: `- [sysctl, -p, /etc/sysctl.d/90-wgmesh.conf]`."""


class _Dumper(yaml.SafeDumper):
    """SafeDumper that writes multi-line strings as `|` blocks and argv lists on one line."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _represent_flow_list(dumper: yaml.SafeDumper, value: _FlowList) -> yaml.Node:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=True)


_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(_FlowList, _represent_flow_list)


def write_file(path: str, content: str, permissions: str) -> dict[str, str]:
    """One write_files entry; `permissions` stays a string ('0600'), never the integer 384."""
    return {"path": path, "owner": "root:root", "permissions": permissions, "content": content}


def node_cloud_config(
    *,
    hostname: str,
    wg_conf: str,
    nft_ruleset: str,
    sysctl_conf: str,
    ssh_authorized_keys: Sequence[str] = (),
) -> dict[str, Any]:
    """The node's cloud-config as data (write_files run before runcmd in cloud-init)."""
    doc: dict[str, Any] = {"hostname": hostname}
    if ssh_authorized_keys:
        doc["ssh_authorized_keys"] = list(ssh_authorized_keys)
    doc["write_files"] = [
        write_file(WG_CONF_PATH, wg_conf, "0600"),
        write_file(NFT_PATH, nft_ruleset, "0600"),
        write_file(SYSCTL_PATH, sysctl_conf, "0644"),
    ]
    doc["runcmd"] = [_FlowList(step) for step in RUNCMD]
    return doc


def dump_cloud_config(doc: dict[str, Any]) -> str:
    """`#cloud-config` + YAML; stable key order and no line folding, so output is deterministic."""
    body = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1 << 16)
    return HEADER + body
