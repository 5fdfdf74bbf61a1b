"""Plain data for the edit engine: what to change, what was found, what changed."""

from __future__ import annotations

import re
from dataclasses import dataclass

from handlers.errors import PermanentError, UnsafeInput

TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-fA-F0-9]{32,}$")
IMAGE_RE = re.compile(r"^[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")


class UnsafeEdit(PermanentError):
    """An edit would change more than the intended scalar; the file was left untouched."""


@dataclass(frozen=True, slots=True)
class ImageUpdate:
    """A new image to roll out: ``image`` is ``registry/repository`` without tag or digest."""

    image: str
    tag: str
    digest: str = ""
    policy_name: str | None = None
    """Flux setter name ``ns:name``, matched by ``# {"$imagepolicy": "ns:name"}`` markers."""
    pin_digest: bool = False
    """Add ``@digest`` to full references that do not carry one yet."""

    def __post_init__(self) -> None:
        validate_update(self)


def validate_update(update: ImageUpdate) -> None:
    """Everything we splice into YAML comes from outside: keep it to the OCI grammars."""
    if not IMAGE_RE.match(update.image):
        raise UnsafeInput(f"image name {update.image!r} is not a valid repository reference")
    if not TAG_RE.match(update.tag):
        raise UnsafeInput(f"tag {update.tag!r} is not a valid OCI tag")
    if update.digest and not DIGEST_RE.match(update.digest):
        raise UnsafeInput(f"digest {update.digest!r} is not algorithm:hex")


@dataclass(frozen=True, slots=True)
class Target:
    """One scalar the engine will rewrite: ``old``/``new`` are values, the span is in ``file``."""

    file: str
    line: int
    """1-based line of the scalar."""
    start: int
    end: int
    """Character offsets of the scalar's value text (inside quotes, after anchor/tag)."""
    old: str
    new: str
    image: str
    marker: str
    current_tag: str | None
    """The tag found there before the edit (None for name- or digest-only fields)."""


@dataclass(frozen=True, slots=True)
class Change:
    """One applied edit; feeds the commit message."""

    file: str
    line: int
    old: str
    new: str
    image: str
    marker: str


@dataclass(frozen=True, slots=True)
class Scan:
    """What a scan found: targets (possibly no-ops) and human-readable warnings."""

    targets: tuple[Target, ...]
    warnings: tuple[str, ...]
