"""Docker Hub repository webhooks.

Docker Hub cannot sign or send custom headers, so authenticity rests on a secret segment of the
hook URL (``/hooks/dockerhub/<name>/<token>``); the edge passes it as ``x-shipline-path-token``.
That is weaker than a signature: the URL leaks through logs and proxies, and a leaked URL lets
anyone announce tags — which then still have to exist in the registry to be deployed.

``push_data.tag`` + ``repository.repo_name`` → ``ImagePushed(registry="docker.io")``; Docker Hub
sends no digest (``""``) and no delivery id.
"""

from __future__ import annotations

from dataclasses import dataclass

from handlers.sources._build import image_pushed
from handlers.sources._common import get_str, load_json, malformed_on_unsafe, verify_path_token
from handlers.sources.base import Headers, Parsed, Secrets

REGISTRY = "docker.io"


@dataclass(frozen=True)
class DockerHubSource:
    name: str = "dockerhub"

    def verify(self, headers: Headers, body: bytes, secrets: Secrets) -> None:
        verify_path_token(headers, secrets)

    @malformed_on_unsafe
    def parse(self, headers: Headers, body: bytes) -> Parsed:
        data = load_json(body)
        event = image_pushed(
            registry=REGISTRY,
            repository=get_str(data, "repository.repo_name"),
            tag=get_str(data, "push_data.tag"),
            digest="",
            delivery_id="",
            source=self.name,
        )
        return Parsed(events=(event,), event_type="push")
