"""CNCF Distribution notifications: bearer token, envelope of events, tagged manifest pushes only."""

from __future__ import annotations

import json

import pytest

from handlers.errors import MalformedPayload, SignatureError
from handlers.events import ImagePushed
from handlers.sources import SOURCES
from handlers.sources.base import Secrets
from tests.handlers.sources.helpers import OTHER, SECRET, deliver
from tests.webhook_fixtures import fixture_bytes, fixture_headers, fixture_json

SOURCE = SOURCES["registry"]
AUTH = {"authorization": f"Bearer {SECRET}"}

EXPECTED = {
    "distribution/push.keel.json": ((ImagePushed(
        registry="registry.git.erxes.io", repository="foo/bar", tag="1.6.1",
        digest="sha256:4afff550708506c5b8b7384ad10d401a02b29ed587cb2730cb02753095b5178d",
        delivery_id="d83e8796-7ba5-46ad-b239-d88473e21b2b", source="registry"),), None),
    "distribution/push-envelope.docs.json": ((), "no tagged manifest push among 3 event(s)"),
    "distribution/pull.docs.json": ((), "no tagged manifest push among 1 event(s)"),
}
DELIVERY_IDS = {
    "distribution/push.keel.json": "d83e8796-7ba5-46ad-b239-d88473e21b2b",
    "distribution/push-envelope.docs.json": "asdf-asdf-asdf-asdf-0-asdf-asdf-asdf-asdf-1-asdf-asdf-asdf-asdf-2",
    "distribution/pull.docs.json": "320678d8-ca14-430f-8bb6-4ca139cd83f7",
}
FIXTURES_COVERED = {*EXPECTED, "distribution/push-envelope.docs.headers.json"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture(name):
    events, reason = EXPECTED[name]
    parsed = deliver(SOURCE, AUTH, fixture_bytes(name))
    assert (parsed.events, parsed.ignored) == (events, reason)
    assert parsed.delivery_id == DELIVERY_IDS[name]


def test_documented_headers_carry_the_token_in_authorization():
    documented = fixture_headers("distribution/push-envelope.docs.headers.json")
    SOURCE.verify(documented, b"{}", Secrets(documented["authorization"]))
    with pytest.raises(SignatureError):
        SOURCE.verify(documented, b"{}", Secrets(SECRET))


@pytest.mark.parametrize("value", [SECRET, f"Bearer {SECRET}"])
def test_token_is_accepted_bare_or_as_bearer(value):
    SOURCE.verify({"authorization": value}, b"{}", Secrets(SECRET))


@pytest.mark.parametrize("value", [OTHER, f"Bearer {OTHER}", f"Basic {SECRET}", SECRET + " "])
def test_other_tokens_are_rejected(value):
    with pytest.raises(SignatureError, match="does not match"):
        SOURCE.verify({"authorization": value}, b"{}", Secrets(SECRET))


def test_missing_token_is_rejected():
    with pytest.raises(SignatureError, match="missing token header authorization"):
        SOURCE.verify({}, b"{}", Secrets(SECRET))


def test_custom_header_and_previous_token():
    SOURCE.verify({"x-registry-token": OTHER}, b"{}", Secrets("new", previous=OTHER, header="X-Registry-Token"))


def test_tagged_manifest_among_blobs_is_kept_and_host_falls_back_to_url():
    data = fixture_json("distribution/push-envelope.docs.json")
    data["events"][0]["target"]["tag"] = "2.0"
    del data["events"][0]["request"]["host"]
    data["events"][0]["target"]["mediaType"] = "application/vnd.oci.image.index.v1+json"
    parsed = SOURCE.parse({}, json.dumps(data).encode())
    assert [(e.registry, e.repository, e.tag) for e in parsed.events] == [("example.com", "library/test", "2.0")]


def test_blob_with_a_tag_is_still_not_an_image():
    data = fixture_json("distribution/push-envelope.docs.json")
    data["events"] = [data["events"][1]]
    data["events"][0]["target"]["tag"] = "latest"
    assert SOURCE.parse({}, json.dumps(data).encode()).ignored


def test_bad_tag_is_malformed():
    data = fixture_json("distribution/push.keel.json")
    data["events"][0]["target"]["tag"] = "1.6.1;rm"
    with pytest.raises(MalformedPayload, match="^tag: "):
        SOURCE.parse({}, json.dumps(data).encode())


def test_missing_events_is_malformed():
    with pytest.raises(MalformedPayload, match="events"):
        SOURCE.parse({}, b'{"event": []}')
