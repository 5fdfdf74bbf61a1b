"""Sign deliveries the way each sender does, with a test secret, and run verify → parse."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from handlers.sources.base import Parsed, Secrets, Source

SECRET = "s3cr3t-for-tests"
OTHER = "not-the-secret"
SECRETS = Secrets(current=SECRET)


def hex256(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def hub256(secret: str, body: bytes) -> str:
    return "sha256=" + hex256(secret, body)


def standard_webhook(key: bytes, msg_id: str, stamp: int, body: bytes) -> dict[str, str]:
    """Standard Webhooks headers (GitLab signing token)."""
    signed = f"{msg_id}.{stamp}.".encode() + body
    signature = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {"webhook-id": msg_id, "webhook-timestamp": str(stamp), "webhook-signature": f"v1,{signature}"}


def deliver(source: Source, headers: Mapping[str, str], body: bytes, secrets: Secrets = SECRETS) -> Parsed:
    """What the edge does: verify the raw bytes, then parse them."""
    source.verify(headers, body, secrets)
    return source.parse(headers, body)


def fields(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__dataclass_fields__}


def deep(levels: int) -> bytes:
    """A JSON object nested ``levels`` deep: {"a": {"a": ... {} }}."""
    return b'{"a":' * (levels - 1) + b"{}" + b"}" * (levels - 1)
