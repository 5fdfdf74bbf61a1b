"""One ``flock`` helper for what builds share on disk: a mirror, a kept checkout, buildah's storage."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def flocked(path: Path, *, wait: bool = True, shared: bool = False) -> Iterator[bool]:
    """An ``flock`` on the file ``path`` (created, with its folder) held within; ``wait=False``
    gives up at once when another holds it: yields whether it is held."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
