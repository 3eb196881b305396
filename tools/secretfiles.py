"""Writing files that hold keys: 0600 from the first byte, in 0700 directories.

Shared by `make render` and `make client`, so no tool has its own idea of "private".
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, TextIO


@contextmanager
def private_umask() -> Iterator[None]:
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)  # an existing directory may have been looser


@contextmanager
def open_private(path: Path, mode: int = 0o600) -> Iterator[BinaryIO]:
    """Create or truncate with `mode` from the first byte (no window where a secret is readable)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), mode)  # an existing file may have been looser
        yield f


@contextmanager
def append_private(path: Path, mode: int = 0o600) -> Iterator[TextIO]:
    """Append text to a log that may quote secrets (a failed step's command), `mode` from the first byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        os.fchmod(f.fileno(), mode)
        yield f


def write_private(path: Path, text: str, mode: int = 0o600) -> None:
    with open_private(path, mode) as f:
        f.write(text.encode("utf-8"))
