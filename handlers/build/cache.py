"""Content-addressed skip: the same build inputs are never built twice, only re-tagged.

The key hashes what ``buildah bud`` sees: the context's git tree id (a content hash over every
entry under it: names, modes, blob ids), the Dockerfile's blob id, the build args and the
target. Both ids come from one ``git rev-parse``, so neither an export nor a listing of the
context is needed to decide, however many files it holds. Not covered: a moving
``FROM`` tag (``base:latest`` re-pushed) — the first build's result keeps being reused.

The index is one small JSON file per key under ``<state_dir>/build-index/<image>/<key>.json``
(digest, a tag known to exist, the commit that built it), written atomically. A hit is trusted
only after one ``HEAD`` shows the manifest is still in the registry.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from handlers.build.changes import context_dir
from handlers.build.mirror import Mirror
from handlers.build.registry import RegistryClient
from handlers.errors import PermanentError
from handlers.settings import ImageBuildConfig
from handlers.validate import validate_relpath, validate_sha

KEY_VERSION = 2
"""2: the context as its tree id (1 listed every entry); a key of 1 is never reused."""


@dataclass(frozen=True, slots=True)
class IndexRecord:
    image: str
    key: str
    digest: str
    tag: str
    sha: str
    pushed_at: float


def context_key(mirror: Mirror, sha: str, image: ImageBuildConfig, dockerfile: str) -> str:
    """sha256 over the context tree, the Dockerfile content, build args and target."""
    tree, blob = _object_ids(mirror, validate_sha(sha), context_dir(image), dockerfile)
    return _key(image, tree, blob)


def context_keys(mirror: Mirror, sha: str, images: Sequence[tuple[ImageBuildConfig, str]]) -> dict[str, str]:
    """``context_key`` of each (image, Dockerfile path), by image name, from one git process for
    them all; empty when any of them cannot be read (``context_key`` then says which and why)."""
    try:
        specs = [spec for image, dockerfile in images
                 for spec in _specs(validate_sha(sha), context_dir(image), dockerfile)]
    except PermanentError:
        return {}
    out = mirror.try_run("rev-parse", *specs) if specs else None
    ids = out.split() if out else []
    if len(ids) != len(specs):
        return {}
    return {image.name: _key(image, ids[2 * i], ids[2 * i + 1]) for i, (image, _) in enumerate(images)}


def _key(image: ImageBuildConfig, tree: str, blob: str) -> str:
    payload = {"v": KEY_VERSION, "tree": tree, "dockerfile": blob, "build_args": sorted(image.build_args.items()),
               "target": image.target}
    return hashlib.sha256(json.dumps(payload, separators=(",", ":")).encode()).hexdigest()


def _specs(sha: str, context: str, dockerfile: str) -> tuple[str, str]:
    """What ``git rev-parse`` resolves to the context's tree id and the Dockerfile's blob id; both
    begin with the sha, so neither is ever read as an option."""
    tree = f"{sha}^{{tree}}" if context == "." else f"{sha}:{validate_relpath(context, field='context')}"
    return tree, f"{sha}:{validate_relpath(dockerfile, field='dockerfile')}"


def _object_ids(mirror: Mirror, sha: str, context: str, dockerfile: str) -> tuple[str, str]:
    """The context's tree id and the Dockerfile's blob id at ``sha``, in one git process."""
    tree, blob = _specs(sha, context, dockerfile)
    out = mirror.try_run("rev-parse", tree, blob)
    ids = out.split() if out else []
    if len(ids) != 2:
        kinds = (mirror.try_run("cat-file", "-t", tree), mirror.try_run("cat-file", "-t", blob))
        if kinds[1] != "blob":
            raise PermanentError(f"no Dockerfile at {dockerfile} in {sha[:7]}")
        raise PermanentError(f"no context directory {context} in {sha[:7]}")
    return ids[0], ids[1]


class BuildIndex:
    """Key → the manifest it produced, per image."""

    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir / "build-index"

    def _path(self, image: str, key: str) -> Path:
        slug = re.sub(r"[^a-z0-9]+", "_", image.lower()).strip("_")[:80]
        return self.root / f"{slug}-{hashlib.sha256(image.encode()).hexdigest()[:12]}" / f"{key}.json"

    def get(self, image: str, key: str) -> IndexRecord | None:
        try:
            return IndexRecord(**json.loads(self._path(image, key).read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def put(self, *, image: str, key: str, digest: str, tag: str, sha: str) -> IndexRecord:
        record = IndexRecord(image, key, digest, tag, sha, time.time())
        path = self._path(image, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp-{os.getpid()}-{time.monotonic_ns()}")
        tmp.write_text(json.dumps(asdict(record), indent=2))
        os.replace(tmp, path)
        return record

    def images(self) -> set[str]:
        """Every image with a recorded build (one record read per image)."""
        found: set[str] = set()
        for folder in self.root.iterdir() if self.root.is_dir() else ():
            record = next(folder.glob("*.json"), None) if folder.is_dir() else None
            if record is None:
                continue
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                found.add(str(json.loads(record.read_text())["image"]))
        return found

    def forget(self, image: str, key: str) -> None:
        self._path(image, key).unlink(missing_ok=True)


def reusable(index: BuildIndex, client: RegistryClient, repository: str, record: IndexRecord) -> IndexRecord | None:
    """``record`` (read from ``index``) if its manifest is still in the registry; else it is
    forgotten and ``None``."""
    if client.manifest_exists(repository, record.digest):
        return record
    index.forget(record.image, record.key)
    return None
