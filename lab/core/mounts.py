"""Mounts the lab made, read from /proc/self/mountinfo (both drivers, and the image builder)."""

from __future__ import annotations

from pathlib import Path

from lab.core.proc import run

MOUNTINFO = Path("/proc/self/mountinfo")


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below `root`, deepest (latest) first."""
    prefix = str(root)
    points: list[str] = []
    for line in MOUNTINFO.read_text().splitlines():
        point = _unescape(line.split()[4])
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return list(reversed(points))


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def unmount_under(root: Path) -> list[str]:
    """Unmount everything at or below `root` (lazily if it is busy); return what stays mounted."""
    for point in mounts_under(root):
        if run(["umount", point], check=False).returncode != 0:
            run(["umount", "--lazy", point], check=False)
    return mounts_under(root)
