"""Let cloud-init itself apply a node's write_files, without writing to the host.

A throw-away mount + network namespace: an overlay with the real / as its read-only lower
layer and a tmpfs as upper, chroot into it and run
`cloud-init --file user-data single --name write_files --frequency always`.
The files cloud-init wrote (modes and owners as it set them) are copied out of the upper
layer into the node's directory; the namespace, tmpfs and overlay vanish with the process.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from lab.core.errors import LabError
from lab.core.proc import run, tail
from lab.netns.userdata import WriteFile

# $1 mount point (an empty lab dir), $2 user-data, $3 output dir, $4 modules, then the paths.
_SCRIPT = r"""
set -eu
S=$1; UD=$2; OUT=$3; MODULES=$4; shift 4
mount -t tmpfs -o mode=0700,size=64m wgm-sandbox "$S"
mkdir "$S/upper" "$S/work" "$S/root"
mount -t overlay wgm-sandbox -o "lowerdir=/,upperdir=$S/upper,workdir=$S/work" "$S/root"
mount -t proc proc "$S/root/proc"
mount -t tmpfs -o mode=0755 wgm-run "$S/root/run"
mount -t tmpfs -o mode=0755 wgm-dev "$S/root/dev"
mknod -m 666 "$S/root/dev/null" c 1 3
mknod -m 666 "$S/root/dev/zero" c 1 5
mknod -m 666 "$S/root/dev/random" c 1 8
mknod -m 666 "$S/root/dev/urandom" c 1 9
umask 077
cp "$UD" "$S/root/run/user-data"
for m in $MODULES; do
  chroot "$S/root" cloud-init --file /run/user-data single --name "$m" --frequency always
done
cd "$S/upper"
for p in "$@"; do
  rel=${p#/}
  if [ ! -f "$rel" ]; then echo "cloud-init did not write $p" >&2; exit 3; fi
  cp -a --parents "$rel" "$OUT/"
done
"""


def apply_write_files(
    user_data: Path, files: Sequence[WriteFile], out: Path, mountpoint: Path, log: Path, node: str
) -> None:
    """Run cloud-init's write_files for `user_data`; the written files end up under `out`."""
    mountpoint.mkdir(mode=0o700, parents=True, exist_ok=True)
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    modules = ["write_files"] + (["write_files_deferred"] if any(f.deferred for f in files) else [])
    proc = run(
        [
            "unshare",
            "--mount",
            "--net",
            "--uts",
            "--ipc",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            _SCRIPT,
            "wgm-sandbox",
            str(mountpoint),
            str(user_data),
            str(out),
            " ".join(modules),
            *(f.path for f in files),
        ],
        what=f"{node}: cloud-init write_files sandbox",
        check=False,
        timeout=60,
    )
    _write_private(log, proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise LabError(f"{node}: cloud-init write_files failed (exit {proc.returncode}): {tail(proc.stderr)}")


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
