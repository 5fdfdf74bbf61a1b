"""Keep the local buildah storage bounded: each image's newest builds and the layers they stand on
(and the build logs: those older than ``build.log_keep_days`` go, ``remove_old_logs``).

Why: with ``--layers`` buildah looks for a cached step by walking every image in the storage, and
reads the history of each one built on the same parent layer (every earlier build's first step
after ``FROM`` is such a candidate). Nothing ever leaves the storage by itself, so each build is
slower than the last: measured on one Dockerfile, ``buildah bud`` took 430 ms in an empty storage
and 710 ms after 300 builds (901 images), and the disk grows with every push.

What stays (``plan``): for each configured image repository, the ``keep`` newest images built
(by creation time); every other named image (the bases pulled for ``FROM``); and every unnamed
image (a cached step) whose top layer is one of the layers those images are built on, so the
newest builds' layer cache is whole. Everything else is removed with ``buildah rmi`` (by name for
named images, so every name goes; by id for unnamed ones), which also deletes the layers no image
uses any more.

The storage's own records (``<driver>-images/images.json``, ``<driver>-layers/layers.json``) are
read, never written; a record this module does not understand means no prune and a log line.
A prune runs with the storage held exclusively (``BuildahBuilder`` holds it shared from ``bud`` to
the last push) and never waits for it: a busy storage is pruned the next time. A storage that
stays busy (builds overlapping for longer than ``service.buildcache`` lets a prune wait) is pruned
anyway, sparing every image younger than the build time limit (``plan(spare_since=...)``), so
a running build keeps its cached steps; buildah refuses to remove an image a container uses.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from handlers.build.filelock import flocked
from handlers.images import ImageRef

USE_LOCK = "storage-use.lock"
"""Under ``<state_dir>/buildah``: builds hold it shared, a prune exclusively."""


class StorageUnreadable(Exception):
    """The storage's records are missing or not what this module expects: nothing is pruned."""


@dataclass(frozen=True, slots=True)
class StoredImage:
    id: str
    names: tuple[str, ...]
    top_layer: str | None
    created: str
    """RFC 3339 in UTC, as containers/storage writes it (``_instant`` makes it sortable)."""


@dataclass(frozen=True, slots=True)
class PrunePlan:
    names: tuple[str, ...]
    """Names of the old builds to remove (an image goes with its last name)."""
    ids: tuple[str, ...]
    """Unnamed images (cached steps) no kept image stands on."""
    kept: int

    @property
    def empty(self) -> bool:
        return not self.names and not self.ids


def plan(images: Iterable[StoredImage], parents: Mapping[str, str | None], own: Iterable[str],
         keep: int, *, spare_since: datetime | None = None) -> PrunePlan:
    """What to remove so each repository in ``own`` keeps its ``keep`` newest images (see above).

    ``spare_since``: images created then or later stay whatever else is true of them, with what
    they stand on (a build still running is younger than its time limit: its cached steps have no
    name yet).
    """
    repositories = {_repository(name) for name in own}
    images = list(images)
    cutoff = None if spare_since is None else spare_since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    spared = set() if cutoff is None else {  # a time it cannot read as UTC: spared too
        i.id for i in images if not (i.created.endswith("Z") and i.created[:19] < cutoff)}
    newest: dict[str, list[StoredImage]] = {}
    for image in images:
        for repository in {_repository(name) for name in image.names} & repositories:
            newest.setdefault(repository, []).append(image)
    recent = {i.id for built in newest.values() for i in sorted(built, key=_instant, reverse=True)[:keep]}
    old = {i.id: i for built in newest.values() for i in built if i.id not in recent | spared}
    kept = [i for i in images if (i.names and i.id not in old) or i.id in spared]
    needed = _chains((i.top_layer for i in kept), parents)
    old_names = tuple(name for image in old.values() for name in image.names)
    unused = tuple(i.id for i in images if not i.names and i.top_layer not in needed and i.id not in spared)
    return PrunePlan(old_names, unused, len(images) - len(old) - len(unused))


def _instant(image: StoredImage) -> str:
    """``created`` as fixed-width text that sorts as time: Go's RFC 3339 drops the fraction's
    trailing zeros (``...:01Z``, ``...:01.5Z``, ``...:01.25Z``), which text order gets wrong."""
    whole, _, fraction = image.created.removesuffix("Z").partition(".")
    return f"{whole}.{fraction:0<9}"


def _repository(name: str) -> str:
    return ImageRef.parse(name).canonical


def _chains(tops: Iterable[str | None], parents: Mapping[str, str | None]) -> set[str]:
    """Every layer on the way from each of ``tops`` down to its base."""
    seen: set[str] = set()
    for layer in tops:
        while layer and layer not in seen:
            seen.add(layer)
            layer = parents.get(layer)
    return seen


def read_storage(storage: Path, driver: str) -> tuple[list[StoredImage], dict[str, str | None]]:
    """The images and the layer parents recorded under ``storage`` for ``driver``."""
    try:
        raw_images = _records(storage / f"{driver}-images" / "images.json")
        raw_layers = _records(storage / f"{driver}-layers" / "layers.json")
        images = [StoredImage(str(i["id"]), tuple(i.get("names") or ()), i.get("layer") or None,
                              str(i.get("created", ""))) for i in raw_images]
        parents = {str(layer["id"]): layer.get("parent") or None for layer in raw_layers}
    except (KeyError, TypeError, AttributeError) as exc:
        raise StorageUnreadable(f"unexpected record in {storage}: {exc!r}") from exc
    return images, parents


def _records(path: Path) -> list[dict[str, object]]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise StorageUnreadable(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, list):
        raise StorageUnreadable(f"{path} is not a list of records")
    return data


def remove_old_logs(log_root: Path, *, before: float) -> int:
    """Delete the build logs (and their ``.digest`` files) under ``log_root`` last written before
    ``before`` (a Unix time); the running builds' records are left alone. How many went."""
    removed = 0
    for path in log_root.glob("*/*") if log_root.is_dir() else ():
        if path.suffix not in (".log", ".digest") or not path.is_file():
            continue
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime < before:
                path.unlink()
                removed += 1
    return removed


@contextlib.contextmanager
def storage_in_use(buildah_dir: Path) -> Iterator[None]:
    """Held by a build from ``bud`` to its last push; waits only for a prune in progress."""
    with flocked(buildah_dir / USE_LOCK, shared=True):
        yield


@contextlib.contextmanager
def storage_idle(buildah_dir: Path) -> Iterator[bool]:
    """True (and held exclusively until the block ends) when no build is using the storage."""
    with flocked(buildah_dir / USE_LOCK, wait=False) as held:
        yield held
