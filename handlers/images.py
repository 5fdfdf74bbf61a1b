"""Image references: one type, one parser, one rule for "is the first part a registry host".

``[host[:port]/]repository[:tag][@digest]``, split the way docker does: the digest first (after
``@``), then the tag (after the last ``:`` that comes after the last ``/``, so a port is never a
tag), and the first path component is a registry host when it has a ``.`` or ``:`` or is
``localhost``; otherwise the image lives on Docker Hub (``nginx`` is ``docker.io/library/nginx``).
"""

from __future__ import annotations

from dataclasses import dataclass

DOCKER_HUB = "docker.io"
_HUB_ALIASES = ("index.docker.io/", "docker.io/", "registry-1.docker.io/")


def split_host(name: str) -> tuple[str, str]:
    """``(host, repository)`` of an image name without tag or digest; ``host`` is ``""`` when the
    name has no registry part."""
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return "", name


@dataclass(frozen=True, slots=True)
class ImageRef:
    """``name[:tag][@digest]``; ``name`` is kept as written (``host/repository`` or a Hub short name)."""

    name: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, ref: str) -> ImageRef:
        rest, _, digest = ref.partition("@")
        slash, colon = rest.rfind("/"), rest.rfind(":")
        if colon > slash:
            return cls(rest[:colon], rest[colon + 1 :] or None, digest or None)
        return cls(rest, None, digest or None)

    @property
    def host(self) -> str:
        """The registry host; Docker Hub's for names without one."""
        return split_host(self.name)[0] or DOCKER_HUB

    @property
    def repository(self) -> str:
        """The repository inside the registry (``library/`` added for Hub short names)."""
        host, repository = split_host(self.name)
        if not host and "/" not in repository:
            return f"library/{repository}"
        return repository

    @property
    def canonical(self) -> str:
        """``host/repository``, spelled out: ``nginx`` → ``docker.io/library/nginx``."""
        return f"{self.host}/{self.repository}"

    def format(self) -> str:
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return f"{self.name}{tag}{digest}"

    def __str__(self) -> str:
        return self.format()


def short_name(image: str) -> str:
    """``registry.example/app/frontend`` → ``app/frontend`` (the registry host is noise in messages)."""
    return split_host(image)[1]


def normalize_image(name: str) -> str:
    """Docker Hub spellings collapse: ``docker.io/library/nginx`` == ``nginx``; case never matters
    (registry hosts are case-insensitive and repository names are lower-case by the grammar)."""
    name = name.lower()
    for prefix in _HUB_ALIASES:
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    return name.removeprefix("library/")


def same_image(a: str, b: str) -> bool:
    return normalize_image(a) == normalize_image(b)
