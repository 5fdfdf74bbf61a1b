"""AWS ECR through EventBridge: header token, PUSH + SUCCESS with a tag, host from account/region."""

from __future__ import annotations

import json

import pytest

from handlers.errors import MalformedPayload, SignatureError
from handlers.events import ImagePushed
from handlers.sources import SOURCES
from handlers.sources.base import Secrets
from tests.handlers.sources.helpers import OTHER, SECRET, deliver
from tests.webhook_fixtures import fixture_bytes, fixture_json

SOURCE = SOURCES["ecr"]
AUTH = {"authorization": SECRET}
FIXTURES_COVERED = {"ecr/image-action-push.json", "ecr/image-action-delete.json"}
VALID_DIGEST = "sha256:" + "7f5b2640" * 8


def test_push_fixture_is_malformed_because_its_sample_digest_has_60_hex_digits():
    with pytest.raises(MalformedPayload, match="^digest: "):
        deliver(SOURCE, AUTH, fixture_bytes("ecr/image-action-push.json"))


def test_push_fixture_with_a_valid_digest():
    data = fixture_json("ecr/image-action-push.json")
    data["detail"]["image-digest"] = VALID_DIGEST
    parsed = deliver(SOURCE, AUTH, json.dumps(data).encode())
    assert parsed.events == (ImagePushed(
        registry="123456789012.dkr.ecr.us-west-2.amazonaws.com", repository="my-repository-name",
        tag="latest", digest=VALID_DIGEST, delivery_id="13cde686-328b-6117-af20-0e5566167482", source="ecr"),)
    assert parsed.event_type == "ECR Image Action"


def test_delete_fixture_is_ignored():
    parsed = deliver(SOURCE, AUTH, fixture_bytes("ecr/image-action-delete.json"))
    assert parsed.ignored == "ECR DELETE with result 'SUCCESS' is not handled"
    assert parsed.delivery_id == "dd3b46cb-2c74-f49e-393b-28286b67279d"


def test_failed_push_is_ignored():
    data = fixture_json("ecr/image-action-push.json")
    data["detail"]["result"] = "FAILURE"
    assert SOURCE.parse({}, json.dumps(data).encode()).ignored == "ECR PUSH with result 'FAILURE' is not handled"


def test_other_eventbridge_events_are_ignored():
    data = fixture_json("ecr/image-action-push.json") | {"detail-type": "ECR Image Scan"}
    assert SOURCE.parse({}, json.dumps(data).encode()).ignored == "not an ECR Image Action event"


def test_odd_region_is_malformed():
    data = fixture_json("ecr/image-action-push.json") | {"region": "us-west-2.evil.com/x"}
    data["detail"]["image-digest"] = VALID_DIGEST
    with pytest.raises(MalformedPayload, match="region"):
        SOURCE.parse({}, json.dumps(data).encode())


def test_api_key_header_and_rotation():
    SOURCE.verify({"x-api-key": OTHER}, b"{}", Secrets("new", previous=OTHER, header="x-api-key"))
    with pytest.raises(SignatureError):
        SOURCE.verify({"authorization": OTHER}, b"{}", Secrets(SECRET))
