"""Keys that survive re-renders (`make render ... KEYS=f`): what Pulumi state is to `pulumi up`.

A 0600 JSON file holding each member's 32 random bytes with the key epochs they were made
for, and the PSK root. Re-rendering with the same file keeps every key; a member whose
`keyEpoch` (or the mesh's) changed, or a new member, gets fresh bytes; removed members are
dropped; the PSK root changes only with the mesh's `keyEpoch` (like the RandomBytes keepers
in components/keys.py). The file is rewritten atomically (0600 temp file, rename).
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mesh.errors import RenderError
from mesh.keys import KEY_BYTES, decode_key
from mesh.spec import MeshSpec
from tools.secretfiles import write_private

FORMAT = "wgmesh-render-keys/1"


@dataclass(frozen=True)
class StoredKeys:
    """Random bytes per member and the PSK root; repr shows names only."""

    members: dict[str, bytes]
    mesh_secret: bytes | None
    changed: tuple[str, ...]  # members (and "mesh secret") given new bytes by this load

    def __repr__(self) -> str:
        return f"StoredKeys(<secret>, members={sorted(self.members)}, changed={list(self.changed)})"


def _epochs(spec: MeshSpec) -> dict[str, tuple[int, int]]:
    epochs = {n.name: (spec.mesh.key_epoch, n.key_epoch) for n in spec.nodes}
    epochs.update({c.name: (spec.mesh.key_epoch, c.key_epoch) for c in spec.clients})
    return epochs


def _read(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        raise RenderError(f"{path}: not a readable keys file") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise RenderError(f"{path}: not a {FORMAT} keys file")
    return doc


def _bytes(b64: object, path: Path, what: str) -> bytes:
    try:
        return decode_key(str(b64))
    except ValueError:
        raise RenderError(f"{path}: {what}: not 32 base64 bytes") from None


def load_or_create(path: Path, spec: MeshSpec) -> StoredKeys:
    """The keys for `spec`, reusing what `path` holds; writes the file back when anything changed."""
    doc = _read(path)
    old_members: dict[str, Any] = doc.get("members", {})
    members: dict[str, bytes] = {}
    records: dict[str, dict[str, Any]] = {}
    changed: list[str] = []
    for name, (mesh_epoch, key_epoch) in _epochs(spec).items():
        old = old_members.get(name)
        if isinstance(old, dict) and old.get("epochs") == [mesh_epoch, key_epoch]:
            raw = _bytes(old.get("random"), path, f"members.{name}")
        else:
            raw = os.urandom(KEY_BYTES)
            changed.append(name)
        members[name] = raw
        records[name] = {"epochs": [mesh_epoch, key_epoch], "random": base64.b64encode(raw).decode()}
    secret: bytes | None = None
    secret_record: dict[str, Any] | None = None
    if spec.mesh.preshared_keys:
        old_secret = doc.get("mesh_secret")
        if isinstance(old_secret, dict) and old_secret.get("epoch") == spec.mesh.key_epoch:
            secret = _bytes(old_secret.get("random"), path, "mesh_secret")
        else:
            secret = os.urandom(KEY_BYTES)
            changed.append("mesh secret")
        secret_record = {"epoch": spec.mesh.key_epoch, "random": base64.b64encode(secret).decode()}
    dropped = sorted(set(old_members) - set(members))
    if changed or dropped or not doc or (doc.get("mesh_secret") is not None) != (secret is not None):
        _save(path, {"format": FORMAT, "mesh_secret": secret_record, "members": records})
    return StoredKeys(members, secret, tuple(changed))


def _save(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write_private(tmp, json.dumps(doc, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
