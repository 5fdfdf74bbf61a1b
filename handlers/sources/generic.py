"""A generic, signed sender for scripts and CI systems Shipline has no module for.

Request: ``POST`` JSON with ``X-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>``.
Body, one of (unknown keys are refused; ``id`` is an optional delivery id for dedupe)::

    {"type": "git_pushed", "id": "...", "repo": "owner/name", "ref": "refs/heads/main",
     "before": "<40|64 hex>", "after": "<40|64 hex>", "changed_paths": ["src/app.py"],
     "pusher": "ci", "clone_url": "https://...", "forced": false, "paths_complete": true}

    {"type": "image_pushed", "id": "...", "registry": "ghcr.io", "repository": "org/app",
     "tag": "1.2.3", "digest": "sha256:<64 hex>"}

Required: ``repo``, ``ref``, ``after`` (git) and ``registry``, ``repository``, ``tag`` (image);
``before`` defaults to the zero sha, ``changed_paths`` to ``[]`` with ``paths_complete`` False
unless given, ``digest`` to ``""``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from handlers.errors import MalformedPayload
from handlers.events import Event
from handlers.sources._build import git_pushed, image_pushed
from handlers.sources._common import Json, load_json, malformed_on_unsafe, verify_hmac_header
from handlers.sources.base import Headers, Parsed, Secrets
from handlers.validate import validate_delivery_id

SIGNATURE_HEADER = "x-signature"
GIT_FIELDS = {"repo": str, "ref": str, "after": str, "before": str, "changed_paths": list,
              "pusher": str, "clone_url": str, "forced": bool, "paths_complete": bool}
IMAGE_FIELDS = {"registry": str, "repository": str, "tag": str, "digest": str}
GIT_REQUIRED = ("repo", "ref", "after")
IMAGE_REQUIRED = ("registry", "repository", "tag")


def strict_fields(data: Json, types: dict[str, type], required: tuple[str, ...]) -> dict[str, Any]:
    fields = {k: v for k, v in data.items() if k not in ("type", "id")}
    unknown = sorted(set(fields) - set(types))
    if unknown:
        raise MalformedPayload(f"unknown field(s) {unknown}; allowed: {sorted(types)}")
    missing = [k for k in required if k not in fields]
    if missing:
        raise MalformedPayload(f"missing required field(s) {missing}")
    for key, value in fields.items():
        if type(value) is not types[key]:
            raise MalformedPayload(f"field {key} must be {types[key].__name__}")
    return fields


def git_event(data: Json, delivery: str, source: str) -> Event:
    f = strict_fields(data, GIT_FIELDS, GIT_REQUIRED)
    paths = f.get("changed_paths", [])
    return git_pushed(
        repo=f["repo"], ref=f["ref"], before=f.get("before"), after=f["after"],
        pusher=f.get("pusher", ""), delivery_id=delivery, source=source, changed=tuple(paths),
        clone_url=f.get("clone_url", ""), forced=f.get("forced", False),
        paths_complete=f.get("paths_complete", "changed_paths" in f),
    )


def image_event(data: Json, delivery: str, source: str) -> Event:
    f = strict_fields(data, IMAGE_FIELDS, IMAGE_REQUIRED)
    return image_pushed(
        registry=f["registry"], repository=f["repository"], tag=f["tag"], digest=f.get("digest", ""),
        delivery_id=delivery, source=source,
    )


BUILDERS = {"git_pushed": git_event, "image_pushed": image_event}


@dataclass(frozen=True)
class GenericSource:
    name: str = "generic"

    def verify(self, headers: Headers, body: bytes, secrets: Secrets) -> None:
        verify_hmac_header(headers, body, secrets, (SIGNATURE_HEADER,), "sha256=")

    @malformed_on_unsafe
    def parse(self, headers: Headers, body: bytes) -> Parsed:
        data = load_json(body)
        kind = data.get("type")
        if not isinstance(kind, str) or kind not in BUILDERS:
            raise MalformedPayload(f"field type must be one of {sorted(BUILDERS)}")
        delivery = validate_delivery_id(data["id"], field="id") if "id" in data else ""
        event = BUILDERS[kind](data, delivery, self.name)
        return Parsed(events=(event,), delivery_id=delivery, event_type=kind)
