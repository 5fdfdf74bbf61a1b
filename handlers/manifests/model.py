"""Plain data for the edit engine: what to change, what was found, what changed."""

from __future__ import annotations

from dataclasses import dataclass

from handlers.errors import PermanentError
from handlers.images import split_host
from handlers.validate import validate_digest, validate_registry_host, validate_repository, validate_tag


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
    """Everything we splice into YAML comes from outside: keep it to the OCI grammars.

    Raises ``UnsafeInput`` (a ``PermanentError``) naming the field.
    """
    validate_image(update.image)
    validate_tag(update.tag)
    validate_digest(update.digest)


def validate_image(image: str) -> str:
    """``[host[:port]/]repository``; the first component is a host if it has ``.``/``:`` or is localhost."""
    host, repository = split_host(image)
    if host:
        validate_registry_host(host, field="image")
    validate_repository(repository, field="image")
    return image


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
