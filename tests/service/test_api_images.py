"""The API reads image references with the one shared parser (``handlers.images``)."""

from __future__ import annotations

from typing import Any

import pytest

from handlers.errors import MalformedPayload
from service.api import manual_event, upstream_tag

DIGEST = "sha256:" + "c" * 64


class Targets:
    def __init__(self, images: dict[str, list[str]]) -> None:
        self.images = images

    def get(self, name: str) -> dict[str, Any]:
        return {"images": self.images.get(name, [])}


@pytest.mark.parametrize("running", [
    "127.0.0.1:5000/shop/frontend:1.2.0", f"127.0.0.1:5000/shop/frontend:1.2.0@{DIGEST}",
])
def test_upstream_tag_reads_tag_and_digest_references(running: str) -> None:
    targets = Targets({"staging": [f"127.0.0.1:5000/shop/backend:9.9.9@{DIGEST}", running]})
    assert upstream_tag(targets, ["staging"], "127.0.0.1:5000/shop/frontend") == "1.2.0"  # type: ignore[arg-type]


def test_upstream_tag_matches_docker_hub_spellings() -> None:
    targets = Targets({"staging": [f"docker.io/library/nginx:1.27@{DIGEST}"]})
    assert upstream_tag(targets, ["staging"], "nginx") == "1.27"  # type: ignore[arg-type]


def test_manual_image_event_refuses_a_tag_inside_the_image() -> None:
    with pytest.raises(MalformedPayload, match="tag goes in 'tag'"):
        manual_event({"type": "image_pushed", "image": "127.0.0.1:5000/shop/frontend:1.0.0", "tag": "1.0.0"})
    event = manual_event({"type": "image_pushed", "image": "127.0.0.1:5000/shop/frontend", "tag": "1.0.0"})
    assert (event.registry, event.repository, event.tag) == ("127.0.0.1:5000", "shop/frontend", "1.0.0")
