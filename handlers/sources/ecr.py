"""AWS ECR "ECR Image Action" events, delivered by an EventBridge API destination.

The API destination's connection adds a credential header (API key, Basic or OAuth); we compare
``Authorization`` (or ``secrets.header``, e.g. ``x-api-key``) with the secret in constant time
(bare or ``Bearer <token>``). The body must be the unmodified EventBridge event (no input
transformer).

``detail.action-type == "PUSH"`` with ``result == "SUCCESS"`` and an ``image-tag`` →
``ImagePushed(registry="<account>.dkr.ecr.<region>.amazonaws.com", repository=repository-name,
tag=image-tag, digest=image-digest)``; deletes, failures and tagless pushes are ignored.
Delivery id: the EventBridge event ``id``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from handlers.errors import MalformedPayload
from handlers.sources._build import image_pushed
from handlers.sources._common import (
    Json,
    get,
    get_dict,
    get_str,
    ignore,
    load_json,
    malformed_on_unsafe,
    verify_token_header,
)
from handlers.sources.base import Headers, Parsed, Secrets
from handlers.validate import validate_delivery_id, validate_text

DETAIL_TYPE = "ECR Image Action"
ACCOUNT = re.compile(r"[0-9]{12}")
REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9]")


def registry_host(data: Json) -> str:
    account, region = get_str(data, "account"), get_str(data, "region")
    if not ACCOUNT.fullmatch(account) or not REGION.fullmatch(region):
        raise MalformedPayload(f"account/region {account!r}/{region!r} do not name an ECR registry")
    return f"{account}.dkr.ecr.{region}.amazonaws.com"


@dataclass(frozen=True)
class EcrSource:
    name: str = "ecr"

    def verify(self, headers: Headers, body: bytes, secrets: Secrets) -> None:
        verify_token_header(headers, secrets, "authorization")

    @malformed_on_unsafe
    def parse(self, headers: Headers, body: bytes) -> Parsed:
        data = load_json(body)
        delivery = validate_delivery_id(get_str(data, "id"), field="id")
        if get(data, "detail-type", None) != DETAIL_TYPE or get(data, "source", None) != "aws.ecr":
            return ignore("not an ECR Image Action event", delivery)
        detail = get_dict(data, "detail")
        action = validate_text(get_str(detail, "action-type"), field="detail.action-type", max_len=100)
        result = get(detail, "result", None)
        if action != "PUSH" or result != "SUCCESS":
            return ignore(f"ECR {action} with result {result!r} is not handled", delivery, DETAIL_TYPE)
        tag = get(detail, "image-tag", None)
        if not tag:
            return ignore("push without a tag (pushed by digest)", delivery, DETAIL_TYPE)
        event = image_pushed(
            registry=registry_host(data),
            repository=get_str(detail, "repository-name"),
            tag=tag,
            digest=get_str(detail, "image-digest", default=""),
            delivery_id=delivery,
            source=self.name,
        )
        return Parsed(events=(event,), delivery_id=delivery, event_type=DETAIL_TYPE)
