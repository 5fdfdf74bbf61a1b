"""Azure Container Registry webhooks.

ACR cannot sign; the webhook's custom headers carry a shared token, compared in constant time
with the secret (bare or ``Bearer <token>``) in ``Authorization`` or ``secrets.header``.

``action == "push"`` with ``target.tag`` → ``ImagePushed(registry=request.host,
repository=target.repository, tag, digest)``; the portal's "Ping" (``action == "ping"``) → ping;
``delete``, ``chart_push``, ``chart_delete`` and tagless pushes are ignored.
Delivery id: the payload ``id``.
"""

from __future__ import annotations

from dataclasses import dataclass

from handlers.sources._build import image_pushed
from handlers.sources._common import (
    get,
    get_str,
    ignore,
    load_json,
    malformed_on_unsafe,
    verify_token_header,
)
from handlers.sources.base import Headers, Parsed, Secrets
from handlers.validate import validate_delivery_id, validate_text


@dataclass(frozen=True)
class AcrSource:
    name: str = "acr"

    def verify(self, headers: Headers, body: bytes, secrets: Secrets) -> None:
        verify_token_header(headers, secrets, "authorization")

    @malformed_on_unsafe
    def parse(self, headers: Headers, body: bytes) -> Parsed:
        data = load_json(body)
        action = validate_text(get_str(data, "action"), field="action", max_len=100)
        delivery = validate_delivery_id(get_str(data, "id"), field="id")
        if action == "ping":
            return Parsed(ping=True, delivery_id=delivery, event_type=action)
        if action != "push":
            return ignore(f"action {action} is not handled", delivery, action)
        tag = get(data, "target.tag", None)
        if not tag:
            return ignore("push without a tag (pushed by digest)", delivery, action)
        event = image_pushed(
            registry=get_str(data, "request.host"),
            repository=get_str(data, "target.repository"),
            tag=tag,
            digest=get_str(data, "target.digest", default=""),
            delivery_id=delivery,
            source=self.name,
        )
        return Parsed(events=(event,), delivery_id=delivery, event_type=action)
