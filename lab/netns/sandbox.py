"""Let cloud-init itself apply a node's write_files, without writing to the host.

A throw-away mount + network namespace: an overlay with the real / as its read-only lower
layer and a tmpfs as upper, chroot into it and run
`cloud-init --file user-data single --name write_files --frequency always`.
The files cloud-init wrote (modes and owners as it set them) are copied out of the upper
layer into the node's directory; the namespace, tmpfs and overlay vanish with the process.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lab.core.errors import LabError
from lab.core.proc import NODE_ENV, run, tail
from lab.netns.script_files import WRITE_FILES_SANDBOX, script_text
from lab.netns.userdata import WriteFile
from tools.secretfiles import write_private


def apply_write_files(
    user_data: Path, files: Sequence[WriteFile], out: Path, mountpoint: Path, log: Path, node: str
) -> None:
    """Run cloud-init's write_files for `user_data`; the written files end up under `out`."""
    mountpoint.mkdir(mode=0o700, parents=True, exist_ok=True)
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    modules = ["write_files"] + (["write_files_deferred"] if any(f.deferred for f in files) else [])
    proc = run(
        [
            "unshare", "--mount", "--net", "--uts", "--ipc", "--propagation", "private", "--",
            "sh", "-c", script_text(WRITE_FILES_SANDBOX), "write-files-sandbox",
            *modules, "--", *(f.path for f in files),
        ],
        what=f"{node}: cloud-init write_files sandbox",
        check=False,
        timeout=60,
        env={**NODE_ENV, "SANDBOX": str(mountpoint), "USER_DATA": str(user_data), "OUT": str(out)},
    )  # fmt: skip
    write_private(log, proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise LabError(f"{node}: cloud-init write_files failed (exit {proc.returncode}): {tail(proc.stderr)}")
