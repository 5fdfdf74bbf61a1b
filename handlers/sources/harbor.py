"""Harbor project webhooks, in the Default and the CloudEvents (Harbor ≥ 2.8) formats.

Authenticity: the policy's "Auth Header" value arrives verbatim in ``Authorization`` (or
``secrets.header``) and is compared with the secret in constant time (bare or ``Bearer <token>``).

``PUSH_ARTIFACT`` / ``harbor.artifact.pushed`` → one ``ImagePushed`` per resource that has a tag:
registry = host of ``resource_url``, repository = ``repository.repo_full_name``. A push by digest
reports the digest as ``tag``; such resources are skipped (no tag to deploy). Every other event
type (delete, pull, scan, quota...) is ignored.
Delivery id: the CloudEvents ``id``; the Default format has none, so ``<occur_at>:<first digest>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from handlers.errors import MalformedPayload
from handlers.events import ImagePushed
from handlers.sources._build import image_pushed
from handlers.sources._common import (
    Json,
    get,
    get_dict,
    get_list,
    get_str,
    ignore,
    load_json,
    malformed_on_unsafe,
    outcome,
    verify_token_header,
)
from handlers.sources.base import Headers, Parsed, Secrets
from handlers.validate import validate_delivery_id, validate_text

PUSH_TYPES = ("PUSH_ARTIFACT", "harbor.artifact.pushed")


def envelope(data: Json) -> tuple[Json, str]:
    """(event data, delivery id) for either format."""
    if "specversion" in data:
        return get_dict(data, "data"), validate_delivery_id(get(data, "id"), field="id")
    event_data = get_dict(data, "event_data")
    resources = get_list(event_data, "resources", optional=True)
    first = resources[0] if resources and isinstance(resources[0], dict) else {}
    stamp, digest = get(data, "occur_at", ""), get(first, "digest", "")
    return event_data, validate_delivery_id(f"{stamp}:{digest}", field="occur_at") if stamp else ""


def to_image(resource: Any, repository: str, delivery: str, source: str) -> ImagePushed | None:
    if not isinstance(resource, dict):
        raise MalformedPayload("resources[] must be objects")
    tag = get_str(resource, "tag", default="")
    if not tag or tag.startswith("sha256:"):
        return None
    return image_pushed(
        registry=get_str(resource, "resource_url").split("/", 1)[0],
        repository=repository,
        tag=tag,
        digest=get_str(resource, "digest", default=""),
        delivery_id=delivery,
        source=source,
    )


@dataclass(frozen=True)
class HarborSource:
    name: str = "harbor"

    def verify(self, headers: Headers, body: bytes, secrets: Secrets) -> None:
        verify_token_header(headers, secrets, "authorization")

    @malformed_on_unsafe
    def parse(self, headers: Headers, body: bytes) -> Parsed:
        data = load_json(body)
        event_type = validate_text(get_str(data, "type"), field="type", max_len=100)
        event_data, delivery = envelope(data)
        if event_type not in PUSH_TYPES:
            return ignore(f"event type {event_type} is not handled", delivery, event_type)
        repository = get_str(event_data, "repository.repo_full_name")
        found = [to_image(r, repository, delivery, self.name) for r in get_list(event_data, "resources")]
        events = [e for e in found if e is not None]
        return outcome(events, "artifact pushed by digest only (no tag)", delivery, event_type)
