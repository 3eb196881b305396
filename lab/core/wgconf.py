"""The lab's one wg0.conf reader: what a node's rendered user-data writes, and its peers.

Both drivers compare a live `wg show` with this (lab.netns.day2 after a change, lab.vm's
replacement check), so they read the conf the same way. The conf holds the node's private
key: callers never log it.
"""

from __future__ import annotations

import base64
import gzip
from pathlib import Path

import yaml

from cloudinit.cloudconfig import GZIP_BASE64, WG_CONF_PATH
from lab.core.errors import LabError


def rendered_wg_conf(render_dir: Path, node: str) -> str:
    """The node's wg0.conf as its user-data writes it (plain or gz+b64). Secret: never log it."""
    doc = yaml.safe_load((render_dir / node / "user-data").read_text())
    for entry in doc.get("write_files") or []:
        if entry.get("path") == WG_CONF_PATH:
            content = str(entry.get("content", ""))
            if entry.get("encoding") == GZIP_BASE64:
                return gzip.decompress(base64.b64decode(content)).decode()
            return content
    raise LabError(f"{node}: its user-data writes no {WG_CONF_PATH}")


def conf_peers(conf: str) -> dict[str, set[str]]:
    """Peer public key -> AllowedIPs as a wg0.conf lists them."""
    peers: dict[str, set[str]] = {}
    key: str | None = None
    for raw in conf.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("["):
            key = None
        name, _, value = (part.strip() for part in line.partition("="))
        if name == "PublicKey":
            key = value
            peers[key] = set()
        elif name == "AllowedIPs" and key is not None:
            peers[key] |= {v.strip() for v in value.split(",") if v.strip()}
    return peers
