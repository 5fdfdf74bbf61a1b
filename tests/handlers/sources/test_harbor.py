"""Harbor: Authorization token, Default and CloudEvents formats, digest-only pushes skipped."""

from __future__ import annotations

import json

import pytest

from handlers.errors import MalformedPayload, SignatureError
from handlers.events import ImagePushed
from handlers.sources import SOURCES
from handlers.sources.base import Secrets
from tests.handlers.sources.helpers import OTHER, SECRET, deliver
from tests.webhook_fixtures import fixture_bytes, fixture_json

SOURCE = SOURCES["harbor"]
AUTH = {"authorization": SECRET}
DIGEST_954 = "sha256:954b378c375d852eb3c63ab88978f640b4348b01c1b3456a024a81536dafbbf4"

EXPECTED = {
    "harbor/PUSH_ARTIFACT.tagged.pre-2.8-docs.json": ((ImagePushed(
        registry="hub.harbor.com", repository="test-webhook/debian", tag="latest",
        digest="sha256:8a9e9863dbb6e10edb5adfe917c00da84e1700fa76e7ed02476aa6e6fb8ee0d8",
        delivery_id="1586922308:sha256:8a9e9863dbb6e10edb5adfe917c00da84e1700fa76e7ed02476aa6e6fb8ee0d8",
        source="harbor"),), None, "PUSH_ARTIFACT"),
    "harbor/PUSH_ARTIFACT.json": ((), "artifact pushed by digest only (no tag)", "PUSH_ARTIFACT"),
    "harbor/PUSH_ARTIFACT.cloudevents.json": (
        (), "artifact pushed by digest only (no tag)", "harbor.artifact.pushed"),
    "harbor/DELETE_ARTIFACT.json": ((), "event type DELETE_ARTIFACT is not handled", "DELETE_ARTIFACT"),
    "harbor/DELETE_ARTIFACT.jobservice-log.json": (
        (), "event type DELETE_ARTIFACT is not handled", "DELETE_ARTIFACT"),
}
FIXTURES_COVERED = set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture(name):
    events, reason, event_type = EXPECTED[name]
    parsed = deliver(SOURCE, AUTH, fixture_bytes(name))
    assert (parsed.events, parsed.ignored, parsed.event_type) == (events, reason, event_type)


def test_cloudevents_id_is_the_delivery_id_and_tagged_push_is_an_image():
    data = fixture_json("harbor/PUSH_ARTIFACT.cloudevents.json")
    data["data"]["resources"][0]["tag"] = "3.19"
    data["data"]["resources"][0]["resource_url"] = "harbor.example.com:8443/harbor/alpine:3.19"
    parsed = SOURCE.parse({}, json.dumps(data).encode())
    assert parsed.delivery_id == "66e18103-09c1-41f6-982f-37df223f3eeb"
    assert parsed.events == (ImagePushed(
        registry="harbor.example.com:8443", repository="harbor/alpine", tag="3.19", digest=DIGEST_954,
        delivery_id=parsed.delivery_id, source="harbor"),)


def test_default_format_delivery_id_from_occur_at_and_digest():
    parsed = SOURCE.parse({}, fixture_bytes("harbor/PUSH_ARTIFACT.json"))
    assert parsed.delivery_id == f"1680501893:{DIGEST_954}"


def test_bearer_and_custom_header_and_previous_token():
    SOURCE.verify({"authorization": f"Bearer {SECRET}"}, b"{}", Secrets(SECRET))
    SOURCE.verify({"x-harbor-auth": OTHER}, b"{}", Secrets(SECRET, previous=OTHER, header="x-harbor-auth"))


def test_wrong_or_missing_token_is_rejected():
    with pytest.raises(SignatureError, match="does not match"):
        SOURCE.verify({"authorization": OTHER}, b"{}", Secrets(SECRET))
    with pytest.raises(SignatureError, match="missing"):
        SOURCE.verify({}, b"{}", Secrets(SECRET))


def test_bad_repository_is_malformed():
    data = fixture_json("harbor/PUSH_ARTIFACT.tagged.pre-2.8-docs.json")
    data["event_data"]["repository"]["repo_full_name"] = "Test/Debian"
    with pytest.raises(MalformedPayload, match="^repository: "):
        SOURCE.parse({}, json.dumps(data).encode())
