"""Docker Hub: path token (no signature), tag + repo_name, no digest."""

from __future__ import annotations

import json

import pytest

from handlers.errors import MalformedPayload, SignatureError
from handlers.events import ImagePushed
from handlers.sources import SOURCES
from handlers.sources.base import Secrets
from tests.handlers.sources.helpers import OTHER, SECRET, deliver
from tests.webhook_fixtures import fixture_bytes, fixture_json

SOURCE = SOURCES["dockerhub"]
TOKEN = {"x-shipline-path-token": SECRET}

EXPECTED = {
    "dockerhub/push.docs.json": ImagePushed(
        registry="docker.io", repository="svendowideit/testhook", tag="latest", digest="", delivery_id="",
        source="dockerhub"),
    "dockerhub/push.keel.json": ImagePushed(
        registry="docker.io", repository="karolisr/keel", tag="0.1.7", digest="", delivery_id="",
        source="dockerhub"),
}
FIXTURES_COVERED = set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture(name):
    parsed = deliver(SOURCE, TOKEN, fixture_bytes(name))
    assert parsed.events == (EXPECTED[name],)
    assert (parsed.delivery_id, parsed.event_type) == ("", "push")


def test_wrong_path_token_is_rejected():
    with pytest.raises(SignatureError, match="path token does not match"):
        SOURCE.verify({"x-shipline-path-token": OTHER}, b"{}", Secrets(SECRET))


def test_missing_path_token_is_rejected():
    with pytest.raises(SignatureError, match="missing path token"):
        SOURCE.verify({}, b"{}", Secrets(SECRET))


def test_previous_path_token_is_accepted():
    SOURCE.verify({"x-shipline-path-token": OTHER}, b"{}", Secrets("new", previous=OTHER))


def test_bad_tag_is_malformed():
    data = fixture_json("dockerhub/push.keel.json")
    data["push_data"]["tag"] = "../x"
    with pytest.raises(MalformedPayload, match="^tag: "):
        SOURCE.parse({}, json.dumps(data).encode())
