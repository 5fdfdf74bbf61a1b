"""A kept checkout of each image's context, moved from one build's commit to the next by what changed.

Exporting the whole context for every build writes every file again, and on a slow disk that is
most of Shipline's own time in a build (118 files: 60-80 ms here, against 2-5 ms to move a kept
checkout by one changed file). So each image has one checkout under
``<state_dir>/contexts/<repo>/<image>-<hash>/``: ``tree/`` (the context's files, nothing else), the
``index`` git keeps for it, and a ``complete`` marker. ``git read-tree --reset -u`` against the index
rewrites only the files whose blob changed and deletes the files the new tree no longer has.

Only one build uses a checkout at a time (an ``flock`` held until the build is done); a build that
finds it held gets ``None`` and exports a fresh copy as before. The marker is removed before an
update and written after it, so a checkout an update left half done (a killed worker) is wiped and
checked out whole; so is one git cannot move (a damaged index), once, before the build fails.
The worker's idle tick removes the checkouts of images no longer configured (``remove_unkept``).
Git writes the files, so the checks every checkout makes hold: no path with
``.git`` or ``..``, nothing written through a symbolic link. The mirror's ``info/attributes``
turns off every conversion (``handlers.build.mirror.NEUTRAL_ATTRIBUTES``), so the files are the
commit's bytes. Files are written with umask 022, whatever the worker's, as the export's are.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from handlers.build.filelock import flocked
from handlers.build.mirror import GIT_ENV, GIT_TIMEOUT_SECONDS, Mirror
from handlers.errors import PermanentError
from handlers.validate import validate_relpath, validate_sha


def checkout_dir(state_dir: Path, repo: str, image: str) -> Path:
    """Where ``image`` of ``repo`` keeps its checkout: readable, and distinct for distinct names."""
    slug = re.sub(r"[^A-Za-z0-9]+", "_", image).strip("_")[-60:]
    return state_dir / "contexts" / repo / f"{slug}-{hashlib.sha256(image.encode()).hexdigest()[:8]}"


@contextlib.contextmanager
def kept_context(mirror: Mirror, sha: str, context: str, where: Path) -> Iterator[Path | None]:
    """``where/tree`` holding the tree of ``context`` (repo-relative, ``.`` for all) at ``sha``,
    for as long as the block runs; None when another build holds it (export a fresh copy instead)."""
    sha = validate_sha(sha)
    treeish = f"{sha}^{{tree}}" if context in ("", ".") else f"{sha}:{validate_relpath(context, field='context')}"
    with flocked(where / "lock", wait=False) as held:
        yield _moved(mirror, treeish, where) if held else None


def _moved(mirror: Mirror, treeish: str, where: Path) -> Path:
    tree, complete = where / "tree", where / "complete"
    if not complete.exists():
        _wipe(where)
    complete.unlink(missing_ok=True)
    error = _read_tree(mirror, treeish, where)
    if error is not None:  # a damaged index or tree: once more from nothing
        _wipe(where)
        error = _read_tree(mirror, treeish, where)
    if error is not None:
        _wipe(where)
        raise PermanentError(f"cannot check out {treeish}: {error}")
    complete.touch()
    return tree


def _read_tree(mirror: Mirror, treeish: str, where: Path) -> str | None:
    """git's complaint, or None when ``where/tree`` matches ``treeish``."""
    (where / "tree").mkdir(exist_ok=True)
    argv = ["git", "--git-dir", str(mirror.path), "--work-tree", str(where / "tree"),
            "read-tree", "--reset", "-u", treeish]
    env = {**os.environ, **GIT_ENV, "GIT_INDEX_FILE": str(where / "index")}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, umask=0o022, timeout=GIT_TIMEOUT_SECONDS,
                          check=False)
    return None if done.returncode == 0 else done.stderr.strip()[-500:]


def _wipe(where: Path) -> None:
    shutil.rmtree(where / "tree", ignore_errors=True)
    (where / "index").unlink(missing_ok=True)


def remove_unkept(state_dir: Path, kept: set[Path]) -> list[Path]:
    """Remove every checkout under ``<state_dir>/contexts`` that is not in ``kept`` (its image is no
    longer configured) and that no build holds; the ones removed."""
    removed = []
    for where in sorted((state_dir / "contexts").glob("*/*")):
        if where in kept or not where.is_dir():
            continue
        with flocked(where / "lock", wait=False) as held:
            if not held:
                continue
            shutil.rmtree(where, ignore_errors=True)
        removed.append(where)
    for repo in (state_dir / "contexts").glob("*"):
        with contextlib.suppress(OSError):
            repo.rmdir()  # only when empty
    return removed
