"""Which containers/storage driver buildah uses: overlay where the kernel offers it, else vfs.

With ``--layers`` every instruction is committed; on vfs each layer is a full copy of the root
filesystem, on overlay only what the step changed. ``auto`` (the default) proves overlay works by
mounting one, exactly where buildah will, under ``<storage>/overlay-probe``: that needs root and an
overlayfs-capable kernel and backing filesystem (an overlay upper dir cannot live on overlayfs
itself). Anything else falls back to vfs, with one log line saying why. The answer is kept per
storage directory for the life of the process.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("shipline.build")
_chosen: dict[tuple[Path, str], StorageChoice] = {}


@dataclass(frozen=True, slots=True)
class StorageChoice:
    driver: str
    """``overlay`` or ``vfs``: what buildah's ``--storage-driver`` gets."""
    reason: str


def storage_driver(setting: str, storage: Path) -> StorageChoice:
    """The driver for ``setting`` (``auto``, ``overlay`` or ``vfs``) and storage root ``storage``."""
    if setting != "auto":
        return StorageChoice(setting, f"build.storage_driver is {setting}")
    key = (storage.resolve(), setting)
    if key not in _chosen:
        problem = overlay_problem(storage)
        choice = StorageChoice("overlay", "an overlay mount works here") if problem is None else \
            StorageChoice("vfs", f"overlay unavailable ({problem}); every build step copies the whole rootfs")
        log.log(logging.INFO if problem is None else logging.WARNING, "buildah storage driver %s: %s",
                choice.driver, choice.reason, extra={"storage": str(storage)})
        _chosen[key] = choice
    return _chosen[key]


def overlay_problem(storage: Path) -> str | None:
    """None when an overlay filesystem can be mounted under ``storage``; else why not."""
    if not sys.platform.startswith("linux"):
        return f"not Linux ({sys.platform})"
    if os.geteuid() != 0:
        return f"needs root, running as uid {os.geteuid()}"
    if not _kernel_has_overlay():
        return "the kernel lists no overlay filesystem in /proc/filesystems (modprobe overlay)"
    probe = storage / "overlay-probe"
    shutil.rmtree(probe, ignore_errors=True)
    try:
        return _try_mount(probe)
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def _kernel_has_overlay() -> bool:
    try:
        return any(line.split()[-1] == "overlay" for line in Path("/proc/filesystems").read_text().splitlines())
    except OSError:
        return False


def _try_mount(probe: Path) -> str | None:
    dirs = {name: probe / name for name in ("lower", "upper", "work", "merged")}
    for path in dirs.values():
        path.mkdir(parents=True)
    (dirs["lower"] / "file").write_text("probe")
    libc = ctypes.CDLL(None, use_errno=True)
    options = f"lowerdir={dirs['lower']},upperdir={dirs['upper']},workdir={dirs['work']}"
    if libc.mount(b"overlay", str(dirs["merged"]).encode(), b"overlay", 0, options.encode()) != 0:
        code = ctypes.get_errno()
        return f"mount -t overlay under {probe.parent} failed: {errno.errorcode.get(code, code)} {os.strerror(code)}"
    try:
        (dirs["merged"] / "file").write_text("copied up")
        return None if (dirs["upper"] / "file").exists() else "an overlay mount did not copy up a written file"
    finally:
        libc.umount2(str(dirs["merged"]).encode(), 2)  # MNT_DETACH
