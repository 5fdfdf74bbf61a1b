"""``.templateignore``: files kluctl copies as they are instead of rendering them.

Same as kluctl (``lib/go-jinja2/jinja2_ignore.go``, go-git's gitignore matcher): the files of the
directories from the repository root down to the deployment item and of every directory inside
it, each pattern scoped to its own directory (its "domain"), later (deeper) patterns taking
precedence, ``!`` re-including. Patterns are parsed by ``pathspec`` (gitignore syntax).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pathspec.patterns.gitignore.basic import GitIgnoreBasicPattern

from handlers.sync.manifestio import read_text

IGNORE_FILE = ".templateignore"


@dataclass(frozen=True)
class TemplateIgnore:
    patterns: tuple[tuple[tuple[str, ...], GitIgnoreBasicPattern], ...]

    def ignored(self, relpath: str) -> bool:
        """Whether ``relpath`` (relative to the repository root, ``/``-separated) is copied as is."""
        parts = tuple(relpath.split("/"))
        for domain, pattern in reversed(self.patterns):
            if parts[:len(domain)] != domain or len(parts) == len(domain):
                continue
            if pattern.match_file("/".join(parts[len(domain):])) is not None:
                return bool(pattern.include)
        return False


def load(root: Path, item_dir: Path, extra: list[str] | None = None) -> TemplateIgnore:
    """The patterns that apply inside ``item_dir``; ``extra`` are added at the item's level."""
    domain = item_dir.relative_to(root).parts if item_dir != root else ()
    patterns: list[tuple[tuple[str, ...], GitIgnoreBasicPattern]] = []
    for depth in range(len(domain)):
        patterns += _read(root, domain[:depth])
    for directory in sorted([item_dir, *(p for p in item_dir.rglob("*") if p.is_dir())]):
        patterns += _read(root, directory.relative_to(root).parts if directory != root else ())
    patterns += [(domain, GitIgnoreBasicPattern(line)) for line in extra or []]
    return TemplateIgnore(tuple(patterns))


def _read(root: Path, domain: tuple[str, ...]) -> list[tuple[tuple[str, ...], GitIgnoreBasicPattern]]:
    path = root.joinpath(*domain, IGNORE_FILE)
    if not path.is_file():
        return []
    lines = read_text(path, "/".join((*domain, IGNORE_FILE))).splitlines()
    return [(domain, GitIgnoreBasicPattern(line)) for line in lines
            if line.strip() and not line.startswith("#")]
