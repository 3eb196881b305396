"""The shell scripts in cloudinit/scripts/, read as package resources (they travel in commands and user data).

A script file opens with a header: its shebang and the comment lines saying what it does and how
it is called. `script_body()` drops that header, so what reaches a node is the code and its
comments: the header is for readers of the file, and user data has a size limit (cloudinit/render.py).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

SCRIPTS_DIR = "scripts"


@cache
def script_text(name: str) -> str:
    """The whole file `cloudinit/scripts/<name>`."""
    return resources.files("cloudinit").joinpath(SCRIPTS_DIR, name).read_text(encoding="utf-8")


def script_body(name: str) -> str:
    """The file without its header: its opening `#` lines (shebang included) and the blank lines after."""
    lines = script_text(name).splitlines(keepends=True)
    start = 0
    while start < len(lines) and lines[start].startswith("#"):
        start += 1
    while start < len(lines) and not lines[start].strip():
        start += 1
    return "".join(lines[start:])
