"""Mounts left under a directory: buildah's overlay storage mounts its own home (and a killed
build its container's ``merged`` directory) and leaves them when the process dies, so the
directory cannot be removed. ``unmount_below`` detaches them, deepest first."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

MNT_DETACH = 2


def mounts_below(root: Path) -> list[Path]:
    """Mount points strictly under ``root`` (from this process's mountinfo), deepest first."""
    prefix = str(root.resolve()).rstrip("/") + "/"
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = _unescape(line.split()[4])
        if point.startswith(prefix):
            found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def unmount_below(root: Path) -> list[str]:
    """Detach every mount under ``root``; the ones that could not be, with why."""
    libc = ctypes.CDLL(None, use_errno=True)
    failed = []
    for point in mounts_below(root):
        if libc.umount2(str(point).encode(), MNT_DETACH) != 0:
            code = ctypes.get_errno()
            failed.append(f"{point}: {os.strerror(code)}")
    return failed


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for escaped, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(escaped, char)
    return field
