"""Read a node's #cloud-config for what the netns lab replays: write_files paths and commands.

cloud-init itself writes the files (lab.sandbox); this module only lists which paths to take
and turns bootcmd/runcmd items into shell lines the way cloud-init's `shellify` does.
Messages name the node and the key, never quote the document (it holds a private key).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

import yaml

from lab.core.errors import LabError

# Modules the netns lab runs (cloud-init for write_files; the commands in the node).
APPLIED = frozenset({"write_files", "bootcmd", "runcmd"})
# Package modules: nothing to do, the lab host already has every tool (scripts/install-debs).
SATISFIED = frozenset({"packages", "package_update", "package_upgrade", "package_reboot_if_required", "apt"})
# write_files encodings cloud-init decodes (cc_write_files.canonicalize_extraction); any other
# value it writes as plain text, so a big mesh's gz+b64 wg0.conf with a typo would be garbage.
ENCODINGS = frozenset(
    {"gz", "gzip", "gz+base64", "gzip+base64", "gz+b64", "gzip+b64", "b64", "base64", "text/plain"}
)


@dataclass(frozen=True)
class WriteFile:
    path: str
    deferred: bool  # `defer: true`: written by the write_files_deferred module, after packages
    encoding: str | None = None  # as rendered (gz+b64 for wg0.conf in big meshes); cloud-init decodes


@dataclass(frozen=True)
class NodeUserData:
    write_files: tuple[WriteFile, ...]
    bootcmd: tuple[str, ...]
    runcmd: tuple[str, ...]
    not_applied: tuple[str, ...]  # top-level keys the netns lab does not emulate (hostname, ...)


def parse_user_data(text: str, where: str) -> NodeUserData:
    if not text.startswith("#cloud-config"):
        raise LabError(f"{where}: not a #cloud-config document")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        raise LabError(f"{where}: not valid YAML") from None
    if not isinstance(doc, dict):
        raise LabError(f"{where}: the cloud-config is not a mapping")
    files = doc.get("write_files") or []
    if not isinstance(files, list):
        raise LabError(f"{where}: write_files is not a list")
    write_files: list[WriteFile] = []
    for i, entry in enumerate(files):
        path = entry.get("path") if isinstance(entry, dict) else None
        if not isinstance(path, str) or not path.startswith("/") or ".." in path.split("/"):
            raise LabError(f"{where}: write_files[{i}].path must be an absolute path")
        encoding = entry.get("encoding")
        if encoding is not None and (
            not isinstance(encoding, str) or encoding.lower().strip() not in ENCODINGS
        ):
            raise LabError(f"{where}: write_files[{i}].encoding is not one cloud-init decodes")
        write_files.append(WriteFile(path, bool(entry.get("defer", False)), encoding))
    return NodeUserData(
        write_files=tuple(write_files),
        bootcmd=_commands(doc.get("bootcmd"), f"{where}: bootcmd"),
        runcmd=_commands(doc.get("runcmd"), f"{where}: runcmd"),
        not_applied=tuple(sorted(k for k in doc if k not in APPLIED | SATISFIED)),
    )


def _commands(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise LabError(f"{where} is not a list")
    return tuple(shellify(item, f"{where}[{i}]") for i, item in enumerate(value))


def shellify(item: object, where: str) -> str:
    """One runcmd item as the shell line cloud-init writes: a string as is, a list quoted."""
    if isinstance(item, str):
        return item
    if isinstance(item, list) and item:
        return " ".join(shlex.quote(str(arg)) for arg in item)
    raise LabError(f"{where}: a command is a string or a non-empty list")
