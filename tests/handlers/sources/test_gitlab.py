"""GitLab: X-Gitlab-Token, the Standard Webhooks signing token, push and tag-push hooks."""

from __future__ import annotations

import base64
import json

import pytest

from handlers.errors import MalformedPayload, SignatureError
from handlers.events import ZERO_SHA, GitPushed
from handlers.sources import SOURCES
from handlers.sources.base import Secrets
from handlers.sources.gitlab import GitLabSource
from tests.handlers.sources.helpers import OTHER, SECRET, deliver, standard_webhook
from tests.webhook_fixtures import fixture_bytes, fixture_headers, fixture_json

SOURCE = SOURCES["gitlab"]
KEY = bytes(range(32))
SIGNING_SECRET = "whsec_" + base64.b64encode(KEY).decode()
NOW = 1_750_000_000
IDEMPOTENCY = "1f0a54f0-0529-408d-a5b8-a2a98ff5f94a"


def headers(event: str, token: str = SECRET) -> dict[str, str]:
    return {"x-gitlab-event": event, "x-gitlab-token": token, "idempotency-key": IDEMPOTENCY}


CASES = {
    "gitlab/push.json": ("Push Hook", GitPushed(
        repo="mike/diaspora", ref="refs/heads/master", before="95790bf891e76fee5e1747ab589903a6a1f80f22",
        after="da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
        changed_paths=("CHANGELOG", "app/controller/application.rb"), pusher="jsmith",
        delivery_id=IDEMPOTENCY, source="gitlab", clone_url="http://example.com/mike/diaspora.git",
        paths_complete=False)),  # total_commits_count 4 > 2 listed
    "gitlab/tag_push.json": ("Tag Push Hook", GitPushed(
        repo="jsmith/example", ref="refs/tags/v1.0.0", before=ZERO_SHA,
        after="82b3d5ae55f7080f1e6022629cdb57bfae7cccc7", changed_paths=(), pusher="John Smith",
        delivery_id=IDEMPOTENCY, source="gitlab", clone_url="http://example.com/jsmith/example.git",
        paths_complete=False)),  # a created tag: the commit list says nothing about what changed
    "gitlab/push.hook-log.json": ("Push Hook", GitPushed(
        repo="flightjs/Flight", ref="refs/heads/master", before="468abc807a2b2572f43e72c743b76cee6db24025",
        after="f15b32277d2c55c6c595845a87109b09c913c556", changed_paths=("package.json",), pusher="root",
        delivery_id=IDEMPOTENCY, source="gitlab", clone_url="https://gitlab.example.com/flightjs/Flight.git",
        paths_complete=True)),
}
FIXTURES_COVERED = {*CASES, "gitlab/push.hook-log.headers.json"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_fixture(name):
    event_type, expected = CASES[name]
    parsed = deliver(SOURCE, headers(event_type), fixture_bytes(name))
    assert parsed.events == (expected,)
    assert (parsed.delivery_id, parsed.event_type) == (IDEMPOTENCY, event_type)


def test_recorded_headers_give_idempotency_key_and_event():
    recorded = fixture_headers("gitlab/push.hook-log.headers.json")
    parsed = SOURCE.parse(recorded, fixture_bytes("gitlab/push.hook-log.json"))
    assert parsed.delivery_id == recorded["idempotency-key"]
    assert parsed.event_type == "Push Hook"


def test_event_uuid_is_the_fallback_delivery_id():
    recorded = fixture_headers("gitlab/push.hook-log.headers.json")
    del recorded["idempotency-key"]
    parsed = SOURCE.parse(recorded, fixture_bytes("gitlab/push.hook-log.json"))
    assert parsed.delivery_id == "842d7c3e-3114-4396-8a95-66c084d53cb1"


def test_redacted_recorded_token_does_not_verify():
    recorded = fixture_headers("gitlab/push.hook-log.headers.json")
    with pytest.raises(SignatureError, match="neither"):
        SOURCE.verify(recorded, fixture_bytes("gitlab/push.hook-log.json"), Secrets(SECRET))


def test_wrong_token_is_rejected():
    with pytest.raises(SignatureError):
        SOURCE.verify(headers("Push Hook", token=OTHER), b"{}", Secrets(SECRET))


def test_previous_token_is_accepted_during_rotation():
    SOURCE.verify(headers("Push Hook", token=OTHER), b"{}", Secrets("new", previous=OTHER))


def test_missing_token_header_is_rejected():
    with pytest.raises(SignatureError, match="missing x-gitlab-token"):
        SOURCE.verify({"x-gitlab-event": "Push Hook"}, b"{}", Secrets(SECRET))


def signed_source() -> GitLabSource:
    return GitLabSource(clock=lambda: NOW)


def test_signing_token_verifies():
    body = fixture_bytes("gitlab/push.json")
    signed_source().verify(standard_webhook(KEY, IDEMPOTENCY, NOW, body), body, Secrets(SIGNING_SECRET))


def test_signing_token_accepts_any_of_several_signatures():
    body = b"{}"
    sent = standard_webhook(KEY, IDEMPOTENCY, NOW, body)
    sent["webhook-signature"] = "v1,AAAA " + sent["webhook-signature"]
    signed_source().verify(sent, body, Secrets(SIGNING_SECRET))


def test_signing_token_rejects_tampered_body():
    body = fixture_bytes("gitlab/push.json")
    sent = standard_webhook(KEY, IDEMPOTENCY, NOW, body)
    with pytest.raises(SignatureError):
        signed_source().verify(sent, body + b" ", Secrets(SIGNING_SECRET))


def test_signing_token_rejects_changed_message_id():
    body = b"{}"
    sent = standard_webhook(KEY, IDEMPOTENCY, NOW, body) | {"webhook-id": "other"}
    with pytest.raises(SignatureError):
        signed_source().verify(sent, body, Secrets(SIGNING_SECRET))


def test_signing_token_rejects_stale_timestamp():
    body = b"{}"
    sent = standard_webhook(KEY, IDEMPOTENCY, NOW - 301, body)
    with pytest.raises(SignatureError, match="webhook-timestamp"):
        signed_source().verify(sent, body, Secrets(SIGNING_SECRET))


def test_signing_scheme_is_not_tried_with_a_plain_token_secret():
    body = b"{}"
    sent = standard_webhook(SECRET.encode(), IDEMPOTENCY, NOW, body)
    with pytest.raises(SignatureError):
        signed_source().verify(sent, body, Secrets(SECRET))


def test_signing_token_during_rotation_uses_previous():
    body = b"{}"
    sent = standard_webhook(KEY, IDEMPOTENCY, NOW, body)
    signed_source().verify(sent, body, Secrets("whsec_" + base64.b64encode(b"n" * 32).decode(),
                                               previous=SIGNING_SECRET))


def test_unhandled_event_is_ignored_not_refused():
    parsed = SOURCE.parse({"x-gitlab-event": "Merge Request Hook"}, b"{}")
    assert parsed.ignored == "event type Merge Request Hook is not handled"


def test_branch_delete_has_zero_after_and_incomplete_paths():
    data = fixture_json("gitlab/push.json") | {"after": ZERO_SHA, "checkout_sha": None, "commits": [],
                                                "total_commits_count": 0}
    event = SOURCE.parse(headers("Push Hook"), json.dumps(data).encode()).events[0]
    assert event.deleted and event.paths_complete is False


def test_bad_ref_is_malformed():
    data = fixture_json("gitlab/push.json") | {"ref": "refs/heads/-rf"}
    with pytest.raises(MalformedPayload, match="^ref: "):
        SOURCE.parse(headers("Push Hook"), json.dumps(data).encode())
