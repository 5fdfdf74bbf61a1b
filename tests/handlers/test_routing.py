"""Routing and the bump read image names the same way (one ``normalize_image``)."""

from __future__ import annotations

from handlers.events import ImagePushed
from handlers.routing import envs_for_image, ignore_reason
from service.config import parse_config


def pushed(registry: str, repository: str) -> ImagePushed:
    return ImagePushed(registry=registry, repository=repository, tag="1.0.0", digest="", delivery_id="",
                       source="dockerhub")


def test_docker_hub_spellings_and_case_route_to_the_same_environment() -> None:
    config = parse_config({"environments": [{"name": "staging", "git": {"url": "http://127.0.0.1:1/m.git"},
                                             "images": [{"image": "docker.io/library/nginx"}]}]})
    for registry, repository in (("docker.io", "library/nginx"), ("index.docker.io", "library/nginx"),
                                 ("registry-1.docker.io", "nginx"), ("Docker.io", "library/nginx")):
        assert [e.name for e in envs_for_image(config, pushed(registry, repository))] == ["staging"]
    assert "not configured" in ignore_reason(config, pushed("ghcr.io", "library/nginx"))
