"""GHCR images announced through GitHub's ``package`` / ``registry_package`` events.

Repository/org hooks send ``package``; GitHub Apps send ``registry_package`` (same body under
that key). We act on container packages only (``package_type`` — or ``ecosystem`` when there is
no ``package_type`` — of ``CONTAINER`` or ``docker``), for ``action`` ``published``/``updated``
(and ``create``, the early GHCR spelling).

Two shapes:
- GHCR: image ``ghcr.io/<namespace or owner.login>/<name>`` lower-cased, tag from
  ``package_version.container_metadata.tag.name``, digest from ``...tag.digest`` (else
  ``package_version.version``/``name`` when it is a ``sha256:`` digest). An empty tag is an
  untagged manifest (multi-arch children) → ignored.
- Legacy docker.pkg.github.com (no ``container_metadata``): image
  ``<registry.url host>/<registry.url path>/<name>`` lower-cased, tag ``package_version.version``,
  digest ``""``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from handlers.sources._build import image_pushed
from handlers.sources._common import Json, get, get_dict, get_str
from handlers.sources.base import Parsed

EVENT_KEYS = ("package", "registry_package")
ACTIONS = ("published", "updated", "create")
CONTAINER_TYPES = ("container", "docker")
GHCR = "ghcr.io"


def package_kind(package: Json) -> str:
    kind = get(package, "package_type", None) or get(package, "ecosystem", None) or ""
    return kind.lower() if isinstance(kind, str) else ""


def sha256_or_empty(*values: object) -> str:
    return next((v for v in values if isinstance(v, str) and v.startswith("sha256:")), "")


def owner(package: Json) -> str:
    return get_str(package, "namespace", default="") or get_str(package, "owner.login")


def ghcr_image(package: Json, version: Json) -> tuple[str, str, str, str]:
    """(registry, repository, tag, digest) for the GHCR shape."""
    tag = get_dict(version, "container_metadata.tag")
    digest = get_str(tag, "digest", default="") or sha256_or_empty(
        get(version, "version", None), get(version, "name", None)
    )
    repository = f"{owner(package)}/{get_str(package, 'name')}".lower()
    return GHCR, repository, get_str(tag, "name", default=""), digest


def legacy_image(package: Json, version: Json) -> tuple[str, str, str, str]:
    """(registry, repository, tag, digest) for the retired docker.pkg.github.com shape."""
    url = urlsplit(get_str(package, "registry.url"))
    base = url.path.strip("/")
    repository = f"{base}/{get_str(package, 'name')}" if base else get_str(package, "name")
    digest = sha256_or_empty(get(version, "version", None))
    return (url.netloc or "").lower(), repository.lower(), get_str(version, "version"), digest


def parse_package(package: Json, data: Json, delivery: str, event_type: str, source: str) -> Parsed:
    def ignored(reason: str) -> Parsed:
        return Parsed(ignored=reason, delivery_id=delivery, event_type=event_type)

    action = get(data, "action", None)
    if action not in ACTIONS:
        return ignored(f"package action {action!r} is not handled")
    kind = package_kind(package)
    if kind not in CONTAINER_TYPES:
        return ignored(f"package type {kind!r} is not a container image")
    version = get_dict(package, "package_version")
    shape = ghcr_image if "container_metadata" in version else legacy_image
    registry, repository, tag, digest = shape(package, version)
    if not tag:
        return ignored("container package version has no tag (untagged manifest)")
    event = image_pushed(
        registry=registry, repository=repository, tag=tag, digest=digest, delivery_id=delivery, source=source
    )
    return Parsed(events=(event,), delivery_id=delivery, event_type=event_type)
