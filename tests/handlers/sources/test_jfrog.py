"""JFrog Artifactory: X-JFrog-Event-Auth as secret or HMAC, docker/pushed → image."""

from __future__ import annotations

import json

import pytest

from handlers.errors import MalformedPayload, SignatureError
from handlers.events import ImagePushed
from handlers.sources import SOURCES
from handlers.sources.base import Secrets
from tests.handlers.sources.helpers import OTHER, SECRET, deliver, hex256
from tests.webhook_fixtures import fixture_bytes, fixture_json

SOURCE = SOURCES["jfrog"]
NAME = "jfrog/docker-pushed.keel.json"
FIXTURES_COVERED = {NAME}


def test_fixture_signed():
    body = fixture_bytes(NAME)
    parsed = deliver(SOURCE, {"x-jfrog-event-auth": hex256(SECRET, body)}, body)
    assert parsed.events == (ImagePushed(
        registry="example.jfrog.io", repository="docker-remote-cache/library/ubuntu", tag="latest",
        digest="sha256:35c4a2c15539c6c1e4e5fa4e554dac323ad0107d8eb5c582d6ff386b383b7dce", delivery_id="",
        source="jfrog"),)
    assert parsed.event_type == "docker/pushed"


def test_plain_secret_is_accepted():
    SOURCE.verify({"x-jfrog-event-auth": SECRET}, fixture_bytes(NAME), Secrets(SECRET))


def test_tampered_body_is_rejected():
    body = fixture_bytes(NAME)
    with pytest.raises(SignatureError, match="x-jfrog-event-auth"):
        SOURCE.verify({"x-jfrog-event-auth": hex256(SECRET, body)}, body.replace(b"latest", b"evil"),
                      Secrets(SECRET))


def test_wrong_missing_and_previous_secret():
    body = fixture_bytes(NAME)
    with pytest.raises(SignatureError):
        SOURCE.verify({"x-jfrog-event-auth": hex256(OTHER, body)}, body, Secrets(SECRET))
    with pytest.raises(SignatureError, match="missing"):
        SOURCE.verify({}, body, Secrets(SECRET))
    SOURCE.verify({"x-jfrog-event-auth": hex256(OTHER, body)}, body, Secrets(SECRET, previous=OTHER))


def test_deleted_is_ignored():
    data = fixture_json(NAME) | {"event_type": "deleted"}
    assert SOURCE.parse({}, json.dumps(data).encode()).ignored == "event type docker/deleted is not handled"


def test_bad_sha_is_malformed():
    data = fixture_json(NAME)
    data["data"]["sha256"] = "abc"
    with pytest.raises(MalformedPayload, match="^digest: "):
        SOURCE.parse({}, json.dumps(data).encode())
