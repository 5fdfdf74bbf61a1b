"""Azure Container Registry: custom-header token, push with tag, delete ignored."""

from __future__ import annotations

import json

import pytest

from handlers.errors import MalformedPayload, SignatureError
from handlers.events import ImagePushed
from handlers.sources import SOURCES
from handlers.sources.base import Secrets
from tests.handlers.sources.helpers import OTHER, SECRET, deliver
from tests.webhook_fixtures import fixture_bytes, fixture_json

SOURCE = SOURCES["acr"]
AUTH = {"authorization": SECRET}
PUSH_ID = "cb8c3971-9adc-488b-bdd8-43cbb4974ff5"
FIXTURES_COVERED = {"acr/push.json", "acr/delete.docs.json"}


def test_push_fixture():
    parsed = deliver(SOURCE, AUTH, fixture_bytes("acr/push.json"))
    assert parsed.events == (ImagePushed(
        registry="myregistry.azurecr.io", repository="hello-world", tag="v1",
        digest="sha256:80f0d5c8786bb9e621a45ece0db56d11cdc624ad20da9fe62e9d25490f331d7d",
        delivery_id=PUSH_ID, source="acr"),)
    assert (parsed.delivery_id, parsed.event_type) == (PUSH_ID, "push")


def test_delete_fixture_is_ignored_before_its_redacted_digest_is_checked():
    parsed = deliver(SOURCE, AUTH, fixture_bytes("acr/delete.docs.json"))
    assert parsed.ignored == "action delete is not handled"
    assert parsed.events == ()


def test_docs_sample_redacted_digest_is_malformed_when_it_matters():
    """Microsoft redacted the sample digest with 'xxxx'; as a push it must be refused."""
    data = fixture_json("acr/delete.docs.json") | {"action": "push"}
    data["target"]["tag"] = "v1"
    with pytest.raises(MalformedPayload, match="^digest: "):
        SOURCE.parse({}, json.dumps(data).encode())


def test_push_by_digest_is_ignored():
    data = fixture_json("acr/push.json")
    del data["target"]["tag"]
    assert SOURCE.parse({}, json.dumps(data).encode()).ignored == "push without a tag (pushed by digest)"


def test_ping_is_answered():
    data = fixture_json("acr/push.json") | {"action": "ping"}
    assert SOURCE.parse({}, json.dumps(data).encode()).ping


def test_custom_header_and_rotation():
    SOURCE.verify({"x-acr-token": OTHER}, b"{}", Secrets("new", previous=OTHER, header="X-ACR-Token"))
    with pytest.raises(SignatureError):
        SOURCE.verify({"x-acr-token": OTHER}, b"{}", Secrets("new", header="X-ACR-Token"))
