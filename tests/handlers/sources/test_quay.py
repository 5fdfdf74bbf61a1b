"""Quay: path token, one event per updated tag, registry from docker_url."""

from __future__ import annotations

import json

import pytest

from handlers.errors import MalformedPayload, SignatureError
from handlers.events import ImagePushed
from handlers.sources import SOURCES
from handlers.sources.base import Secrets
from tests.handlers.sources.helpers import OTHER, SECRET, deliver
from tests.webhook_fixtures import fixture_bytes, fixture_json

SOURCE = SOURCES["quay"]
FIXTURES_COVERED = {"quay/repo_push.json"}


def image(tag: str) -> ImagePushed:
    return ImagePushed(registry="quay.io", repository="dgangaia/test", tag=tag, digest="", delivery_id="",
                       source="quay")


def test_fixture():
    parsed = deliver(SOURCE, {"x-shipline-path-token": SECRET}, fixture_bytes("quay/repo_push.json"))
    assert parsed.events == (image("latest"),)
    assert parsed.event_type == "repo_push"


def test_one_event_per_updated_tag():
    data = fixture_json("quay/repo_push.json") | {"updated_tags": ["1.0", "latest"]}
    assert SOURCE.parse({}, json.dumps(data).encode()).events == (image("1.0"), image("latest"))


def test_self_hosted_registry_host_with_port():
    data = fixture_json("quay/repo_push.json") | {"docker_url": "quay.example.com:8443/dgangaia/test"}
    assert SOURCE.parse({}, json.dumps(data).encode()).events[0].registry == "quay.example.com:8443"


def test_other_notifications_are_ignored():
    parsed = SOURCE.parse({}, json.dumps({"repository": "a/b", "build_id": "x"}).encode())
    assert parsed.ignored == "not a repo_push notification (no updated_tags)"


def test_non_string_tags_are_malformed():
    data = fixture_json("quay/repo_push.json") | {"updated_tags": [1]}
    with pytest.raises(MalformedPayload, match="updated_tags"):
        SOURCE.parse({}, json.dumps(data).encode())


def test_wrong_and_previous_path_tokens():
    with pytest.raises(SignatureError):
        SOURCE.verify({"x-shipline-path-token": OTHER}, b"{}", Secrets(SECRET))
    SOURCE.verify({"x-shipline-path-token": OTHER}, b"{}", Secrets(SECRET, previous=OTHER))
