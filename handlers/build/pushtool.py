"""``shipline-push``: ``buildah push`` with the OCI keys set on the way (``scripts/gotools/push``).

buildah has no way to set a label but a build step: ``--label`` and a ``LABEL`` instruction alike
are one more committed step after the Dockerfile's last (a working container made from its image,
then a commit that rewrites the storage's records with ``fdatasync``), about 40-55 ms of a 0.6 s
build here. ``shipline-push`` reads the image buildah built, as buildah's own ``push`` does (the
same containers/image and containers/storage versions), and serves it to the registry with the
labels added to its config and the annotations to its manifest: the layers are the storage's, the
push skips those the registry holds, and the pushed digest is the one written to ``--digestfile``.

The binary: ``SHIPLINE_PUSH``, else the newest build of ``scripts/build-push.sh`` in Shipline's
cache, else ``shipline-push`` on ``PATH``; without one the keys go in as a build step, as before.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from handlers.errors import PermanentError

HINT = "run scripts/build-push.sh (bootstrap does; needs Go, gcc and libc6-dev) or put shipline-push on PATH"


def push_tool() -> Path | None:
    """The ``shipline-push`` binary to use, or None when there is none."""
    explicit = os.environ.get("SHIPLINE_PUSH")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise PermanentError(f"SHIPLINE_PUSH={explicit} is not an executable file: {HINT}")
        return Path(explicit)
    built = sorted(_cache().glob("push/*/shipline-push"), key=lambda p: p.stat().st_mtime)
    if built:
        return built[-1]
    found = shutil.which("shipline-push")
    return Path(found) if found else None


def _cache() -> Path:
    return Path(os.environ.get("SHIPLINE_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or
                                                         Path.home() / ".cache") / "shipline")
