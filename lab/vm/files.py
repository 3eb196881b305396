"""Named files of a directory as typed attributes: `overlay = FileOf("qcow2")`, not a property each."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class HasFiles(Protocol):
    def file(self, name: str) -> Path: ...


class FileOf:
    """A path attribute: its owner's `file(name)` (a VM's `<node>.qcow2`, the image's `vmlinuz`)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, owner: HasFiles, kind: type | None = None) -> Path:
        return owner.file(self.name)
