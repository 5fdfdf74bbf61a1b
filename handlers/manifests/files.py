"""Which files the engine may read and write: YAML only, inside the root, small, not templates."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

MAX_FILE_BYTES = 1 << 20
SUFFIXES = (".yaml", ".yml")
KUSTOMIZATION_NAMES = frozenset({"kustomization.yaml", "kustomization.yml"})
FLUX_MARK = "$imagepolicy"
TEMPLATE_MARKS = ("{{", "{%", "{#")


@dataclass(frozen=True, slots=True)
class Source:
    rel: str
    path: Path
    text: str

    @property
    def is_kustomization(self) -> bool:
        return self.path.name in KUSTOMIZATION_NAMES


def yaml_files(root: Path) -> Iterator[Path]:
    """Regular ``.yaml``/``.yml`` files under ``root``; symlinks (files or dirs) and ``.git`` skipped."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d != ".git" and not os.path.islink(os.path.join(dirpath, d)))
        for name in sorted(filenames):
            path = Path(dirpath, name)
            if name.endswith(SUFFIXES) and not path.is_symlink() and path.is_file():
                yield path


def relevant(text: str, markers: Sequence[str], kustomization: bool) -> bool:
    """Cheap screen before any parsing: does the file mention anything we edit?"""
    if FLUX_MARK in text or any(marker in text for marker in markers):
        return True
    return kustomization and "images:" in text


def is_template(text: str) -> bool:
    return any(mark in text for mark in TEMPLATE_MARKS)


def read_source(root: Path, path: Path) -> Source | str:
    """The file's text, or a warning saying why it is skipped."""
    rel = path.relative_to(root).as_posix()
    try:
        size = path.lstat().st_size
        if size > MAX_FILE_BYTES:
            return f"{rel}: skipped, larger than {MAX_FILE_BYTES} bytes"
        data = path.read_bytes()
    except OSError as exc:
        return f"{rel}: skipped, unreadable ({exc.strerror})"
    try:
        return Source(rel, path, data.decode("utf-8"))
    except UnicodeDecodeError:
        return f"{rel}: skipped, not UTF-8"


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (bytes as given, no newline translation), keeping its mode."""
    mode = path.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8"))
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
