"""Which files of a git tree a bump must read: each blob is screened once, then known by its id.

A blob's screening facts (does it mention a marker, a Flux setter, ``images:``; is it UTF-8)
depend only on its content, so they are kept by blob id in a small file beside the working
clone. A warm bump lists the tree (``git ls-tree``), reads only the blobs it has never seen plus
the few that carry something to edit, and hands ``scan_sources`` exactly the sources and
warnings that walking and reading every file would give, in the same order.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from handlers.manifests.files import (
    FLUX_MARK,
    MAX_FILE_BYTES,
    Source,
    decode_source,
    is_kustomization,
    is_yaml_name,
    not_utf8,
    too_large,
    walk_key,
)

FORMAT = "shipline-screen v1"
REGULAR_MODES = frozenset({"100644", "100755"})
"""Symlinks (120000) and submodules (160000) are never read, as ``yaml_files`` skips them."""
FLUX, IMAGES, MARKER, NOT_UTF8, TOO_LARGE = "f", "i", "m", "u", "L"


class Blob(Protocol):
    """One ``git ls-tree -r`` entry."""

    @property
    def rel(self) -> str: ...
    @property
    def mode(self) -> str: ...
    @property
    def oid(self) -> str: ...


def facts(data: bytes, markers: Sequence[str]) -> str:
    """The screening facts of one blob, as flag letters."""
    if len(data) > MAX_FILE_BYTES:
        return TOO_LARGE
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return NOT_UTF8
    found = [FLUX] if FLUX_MARK.encode() in data else []
    found += [IMAGES] if b"images:" in data else []
    found += [MARKER] if any(m.encode() in data for m in markers) else []
    return "".join(found)


def wanted(flags: str, rel: str) -> bool:
    """``files.relevant`` from the flags: a valid UTF-8 blob holds text the bump must parse."""
    return FLUX in flags or MARKER in flags or (IMAGES in flags and is_kustomization(rel))


class ScreenIndex:
    """Blob id → facts for one marker set, persisted as ``<oid> <flags>`` lines."""

    def __init__(self, path: Path, markers: Sequence[str]) -> None:
        self.path = path
        self.markers = tuple(sorted(set(markers)))
        self.header = f"{FORMAT} {hashlib.sha256('|'.join(self.markers).encode()).hexdigest()[:16]}"
        self.known = self._load()
        self.changed = False

    def _load(self) -> dict[str, str]:
        try:
            lines = self.path.read_text().splitlines()
        except (OSError, UnicodeDecodeError):
            return {}
        if not lines or lines[0] != self.header:
            return {}
        return dict(line.partition(" ")[::2] for line in lines[1:] if line)

    def learn(self, blobs: Mapping[str, bytes]) -> None:
        for oid, data in blobs.items():
            self.known[oid] = facts(data, self.markers)
        self.changed = self.changed or bool(blobs)

    def save(self, live: set[str]) -> None:
        """Keep the facts of ``live`` blobs only; written atomically, and only when something changed."""
        if not self.changed and live >= self.known.keys():
            return
        self.known = {oid: flags for oid, flags in self.known.items() if oid in live}
        tmp = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}")
        tmp.write_text("\n".join([self.header, *(f"{o} {f}" for o, f in self.known.items())]) + "\n")
        os.replace(tmp, self.path)
        self.changed = False


def tree_sources(entries: Sequence[Blob], index: ScreenIndex, read: Callable[[list[str]], dict[str, bytes]],
                 include: Callable[[str], bool]) -> Iterator[Source | str]:
    """What ``scan`` would get from walking a checkout of the tree: sources and warnings, in order.

    ``read`` returns the content of the given blob ids. Only unknown blobs and the wanted ones
    are read; the index is saved before the first item is yielded.
    """
    files = sorted((e for e in entries if e.mode in REGULAR_MODES and is_yaml_name(e.rel) and include(e.rel)),
                   key=lambda e: walk_key(e.rel))
    fresh = read(sorted({e.oid for e in files if e.oid not in index.known}))
    index.learn(fresh)
    index.save({e.oid for e in files})
    needed = {e.oid for e in files if wanted(index.known[e.oid], e.rel)}
    texts = {**{o: fresh[o] for o in needed & fresh.keys()}, **read(sorted(needed - fresh.keys()))}
    for entry in files:
        flags = index.known[entry.oid]
        if flags == TOO_LARGE:
            yield too_large(entry.rel)
        elif flags == NOT_UTF8:
            yield not_utf8(entry.rel)
        elif entry.oid in needed:
            yield decode_source(entry.rel, texts[entry.oid])
