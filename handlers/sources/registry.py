"""CNCF Distribution registry notifications (also GitLab's bundled registry).

Media types ``application/vnd.docker.distribution.events.v1+json`` (registry 2.x) and ``.v2+json``
(3.x); the body is an envelope ``{"events": [...]}`` that may hold several unrelated events.

Authenticity: the registry cannot sign; its endpoint config sends static headers. We compare
``Authorization`` (or ``secrets.header``) with the secret in constant time, accepting the bare
token or ``Bearer <token>``.

Only ``action == "push"`` of a manifest media type (Docker v2 manifest/list, OCI manifest/index)
that carries ``target.tag`` yields ``ImagePushed``; blob pushes, pulls, mounts, deletes and
manifests pushed by digest are skipped, and a delivery with nothing left is ignored.
Registry host: ``request.host``, else the host of ``target.url``.
Delivery id: the event ids joined with ``-`` (just the first when that would be too long).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from handlers.errors import MalformedPayload
from handlers.events import ImagePushed
from handlers.sources._build import image_pushed
from handlers.sources._common import (
    Json,
    get,
    get_dict,
    get_list,
    get_str,
    load_json,
    malformed_on_unsafe,
    outcome,
    verify_token_header,
)
from handlers.sources.base import Headers, Parsed, Secrets
from handlers.validate import validate_delivery_id, validate_text

MANIFEST_TYPES = frozenset({
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
})
MAX_DELIVERY_ID = 200


def is_tagged_manifest_push(event: Json) -> bool:
    target = get_dict(event, "target", optional=True)
    return (
        get(event, "action", None) == "push"
        and get(target, "mediaType", None) in MANIFEST_TYPES
        and bool(get(target, "tag", None))
    )


def registry_host(event: Json) -> str:
    host = get_str(event, "request.host", default="")
    return host or (urlsplit(get_str(event, "target.url", default="")).netloc)


def envelope_id(events: list[Any]) -> str:
    ids = [validate_delivery_id(get(e, "id"), field="events[].id") for e in events]
    joined = "-".join(ids)
    return joined if len(joined) <= MAX_DELIVERY_ID else (ids[0] if ids else "")


def actions(events: list[Json]) -> str:
    names = sorted({a for e in events if isinstance(a := e.get("action"), str)})
    return validate_text(",".join(names), field="events[].action", max_len=100)


def to_image(event: Json, delivery: str, source: str) -> ImagePushed:
    return image_pushed(
        registry=registry_host(event),
        repository=get_str(event, "target.repository"),
        tag=get_str(event, "target.tag"),
        digest=get_str(event, "target.digest", default=""),
        delivery_id=delivery,
        source=source,
    )


@dataclass(frozen=True)
class RegistrySource:
    name: str = "registry"

    def verify(self, headers: Headers, body: bytes, secrets: Secrets) -> None:
        verify_token_header(headers, secrets, "authorization")

    @malformed_on_unsafe
    def parse(self, headers: Headers, body: bytes) -> Parsed:
        events = get_list(load_json(body), "events")
        if not all(isinstance(e, dict) for e in events):
            raise MalformedPayload("events[] must be objects")
        delivery = envelope_id(events)
        pushed = [to_image(e, delivery, self.name) for e in events if is_tagged_manifest_push(e)]
        reason = f"no tagged manifest push among {len(events)} event(s)"
        return outcome(pushed, reason, delivery, actions(events))
