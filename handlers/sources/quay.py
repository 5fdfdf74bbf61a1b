"""Quay (quay.io and self-hosted) repository notifications.

Quay authenticates itself with a TLS client certificate, which only the TLS terminator can check;
here, like Docker Hub, the hook URL carries a secret segment that the edge passes as
``x-shipline-path-token`` (weaker than a signature; see ``handlers.sources.dockerhub``).

Quay bodies name no event type; a ``repo_push`` is the body with ``updated_tags``. One
``ImagePushed`` per updated tag: registry = host of ``docker_url``, repository = ``repository``.
Quay sends no digest (``""``) and no delivery id. Other notifications are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from handlers.errors import MalformedPayload
from handlers.sources._build import image_pushed
from handlers.sources._common import (
    get_list,
    get_str,
    ignore,
    load_json,
    malformed_on_unsafe,
    outcome,
    verify_path_token,
)
from handlers.sources.base import Headers, Parsed, Secrets


@dataclass(frozen=True)
class QuaySource:
    name: str = "quay"

    def verify(self, headers: Headers, body: bytes, secrets: Secrets) -> None:
        verify_path_token(headers, secrets)

    @malformed_on_unsafe
    def parse(self, headers: Headers, body: bytes) -> Parsed:
        data = load_json(body)
        if "updated_tags" not in data:
            return ignore("not a repo_push notification (no updated_tags)")
        tags = get_list(data, "updated_tags")
        if not all(isinstance(tag, str) for tag in tags):
            raise MalformedPayload("updated_tags must be a list of strings")
        registry = get_str(data, "docker_url").split("/", 1)[0]
        events = [
            image_pushed(registry=registry, repository=get_str(data, "repository"), tag=tag, digest="",
                         delivery_id="", source=self.name)
            for tag in tags
        ]
        return outcome(events, "repo_push with no updated tags", event_type="repo_push")
