"""JFrog Artifactory webhooks for Docker repositories.

Authenticity: ``X-JFrog-Event-Auth`` (or ``secrets.header``) carries either the secret itself or,
with "Use secret for payload signing", ``hex(HMAC-SHA256(secret, raw body))`` (the algorithm is
from Kargo's implementation; JFrog's docs don't state it). Both are compared in constant time;
the plain form is weaker (a replayable bearer token).

``domain == "docker"`` and ``event_type == "pushed"`` → ``ImagePushed(registry=<host of
jpd_origin>, repository="<repo_key>/<image_name>", tag, digest="sha256:"+data.sha256)`` (the
repository-path access method; ``data.sha256`` is the manifest file's hash, i.e. its digest).
Other domains and event types (deleted, promoted...) are ignored. No delivery id.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from handlers.errors import SignatureError
from handlers.sources._build import image_pushed
from handlers.sources._common import (
    any_secret,
    equal,
    get,
    get_str,
    hmac_hex_matches,
    ignore,
    load_json,
    malformed_on_unsafe,
    require_secrets,
)
from handlers.sources.base import Headers, Parsed, Secrets
from handlers.validate import validate_text

AUTH_HEADER = "x-jfrog-event-auth"


@dataclass(frozen=True)
class JFrogSource:
    name: str = "jfrog"

    def verify(self, headers: Headers, body: bytes, secrets: Secrets) -> None:
        require_secrets(secrets)
        name = (secrets.header or AUTH_HEADER).lower()
        value = headers.get(name, "")
        if not value:
            raise SignatureError(f"missing {name} header")
        if not any_secret(secrets, lambda s: equal(value, s) | hmac_hex_matches(s, body, value)):
            raise SignatureError(f"{name} matches neither the secret nor the body's HMAC-SHA256")

    @malformed_on_unsafe
    def parse(self, headers: Headers, body: bytes) -> Parsed:
        data = load_json(body)
        domain = validate_text(get_str(data, "domain"), field="domain", max_len=100)
        action = validate_text(get_str(data, "event_type"), field="event_type", max_len=100)
        event_type = f"{domain}/{action}"
        if event_type != "docker/pushed":
            return ignore(f"event type {event_type} is not handled", event_type=event_type)
        sha = get(data, "data.sha256", None)
        event = image_pushed(
            registry=urlsplit(get_str(data, "jpd_origin")).netloc,
            repository=f"{get_str(data, 'data.repo_key')}/{get_str(data, 'data.image_name')}",
            tag=get_str(data, "data.tag"),
            digest=f"sha256:{sha}" if sha else "",
            delivery_id="",
            source=self.name,
        )
        return Parsed(events=(event,), event_type=event_type)
