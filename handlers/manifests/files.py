"""Which files the engine may read and write: YAML only, inside the root, small, not templates."""

from __future__ import annotations

import os
import posixpath
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
    """One file's text, by its root-relative POSIX path (from a directory or a git tree)."""

    rel: str
    text: str

    @property
    def is_kustomization(self) -> bool:
        return is_kustomization(self.rel)


def is_kustomization(rel: str) -> bool:
    return posixpath.basename(rel) in KUSTOMIZATION_NAMES


def is_yaml_name(rel: str) -> bool:
    return rel.endswith(SUFFIXES)


def walk_key(rel: str) -> tuple[tuple[int, str], ...]:
    """Sort key giving ``yaml_files``' order (a directory's files before its subdirectories)."""
    *dirs, name = rel.split("/")
    return (*((1, d) for d in dirs), (0, name))


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
            return too_large(rel)
        data = path.read_bytes()
    except OSError as exc:
        return f"{rel}: skipped, unreadable ({exc.strerror})"
    return decode_source(rel, data)


def too_large(rel: str) -> str:
    return f"{rel}: skipped, larger than {MAX_FILE_BYTES} bytes"


def decode_source(rel: str, data: bytes) -> Source | str:
    """``data`` as a ``Source``, or the warning for a file that is not UTF-8."""
    try:
        return Source(rel, data.decode("utf-8"))
    except UnicodeDecodeError:
        return not_utf8(rel)


def not_utf8(rel: str) -> str:
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
