"""The netns driver's shell scripts (lab/netns/scripts/), read as package resources.

They run as `sh -c <text>` inside namespaces the lab just made (no path to resolve there);
values go in as arguments and environment, never spliced into the text.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

PRIVATE_MOUNTS = "private-mounts.sh"
WRITE_FILES_SANDBOX = "write-files-sandbox.sh"


@cache
def script_text(name: str) -> str:
    """The whole file `lab/netns/scripts/<name>`."""
    return resources.files("lab.netns").joinpath("scripts", name).read_text(encoding="utf-8")
