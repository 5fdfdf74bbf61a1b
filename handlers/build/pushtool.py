"""``shipline-push``: ``buildah push`` with the OCI keys set on the way (``scripts/gotools/push``).

buildah has no way to set a label but a build step: ``--label`` and a ``LABEL`` instruction alike
are one more committed step after the Dockerfile's last (a working container made from its image,
then a commit that rewrites the storage's records with ``fdatasync``), about 40-55 ms of a 0.6 s
build here. ``shipline-push`` reads the image buildah built, as buildah's own ``push`` does (the
same containers/image and containers/storage versions), and serves it to the registry with the
labels added to its config and the annotations to its manifest: the layers are the storage's, the
push skips those the registry holds, and the pushed digest is the one written to ``--digestfile``.

The binary: ``SHIPLINE_PUSH``, else the newest build of ``scripts/build-push.sh`` in Shipline's
cache, else ``shipline-push`` on ``PATH``; it is used only when its containers/image version is the
installed buildah's (both read and lock one storage). Otherwise the keys go in as a build step.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

from handlers.errors import PermanentError

HINT = "run scripts/build-push.sh (bootstrap does; needs Go, gcc and libc6-dev) or put shipline-push on PATH"
_IMAGE_VERSION = re.compile(r"^image Version:\s+(\S+)\s*$", re.MULTILINE)


def find() -> tuple[Path | None, str]:
    """The ``shipline-push`` binary to use, or None and why there is none."""
    explicit = os.environ.get("SHIPLINE_PUSH")
    if explicit and not os.access(explicit, os.X_OK):
        raise PermanentError(f"SHIPLINE_PUSH={explicit} is not an executable file: {HINT}")
    built = sorted(_cache().glob("push/*/shipline-push"), key=lambda p: p.stat().st_mtime)
    found = explicit or (str(built[-1]) if built else shutil.which("shipline-push"))
    if not found:
        return None, f"shipline-push not found: {HINT}"
    mismatch = _mismatch(found)
    return (None, mismatch) if mismatch else (Path(found), "")


def push_tool() -> Path | None:
    """``find``'s binary, or None."""
    return find()[0]


@functools.cache
def _mismatch(tool: str) -> str | None:
    """Why ``tool`` must not share buildah's storage, or None: its containers/image is buildah's.
    Asked once per process (two short-lived processes)."""
    versions = []
    for argv in ([tool, "--version"], [shutil.which("buildah") or "buildah", "version"]):
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            return f"{argv[0]} {argv[1]} failed: {exc}"
        match = _IMAGE_VERSION.search(out)
        versions.append(match.group(1) if match else "unknown")
    if versions[0] != versions[1] or versions[0] == "unknown":
        return (f"{tool} is built with containers/image {versions[0]} and buildah with {versions[1]}: they "
                "must match to share a storage; pin buildah's in scripts/gotools/push/go.mod and rerun "
                "scripts/build-push.sh")
    return None


def _cache() -> Path:
    return Path(os.environ.get("SHIPLINE_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or
                                                         Path.home() / ".cache") / "shipline")
