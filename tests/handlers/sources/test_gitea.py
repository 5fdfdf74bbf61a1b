"""Gitea and Forgejo: bare-hex signatures, push/create/delete, and no trust in body secrets."""

from __future__ import annotations

import json

import pytest

from handlers.errors import SignatureError
from handlers.events import ZERO_SHA, GitPushed
from handlers.sources import SOURCES
from handlers.sources.base import Secrets
from tests.handlers.sources.helpers import OTHER, SECRET, deliver, hex256, hub256
from tests.webhook_fixtures import fixture_bytes, fixture_headers, fixture_json

GITEA, FORGEJO = SOURCES["gitea"], SOURCES["forgejo"]
DELIVERY = "f6266f16-1bf3-46a5-9ea4-602e06ead473"
CLONE = "http://localhost:3000/example/example.git"
HEAD = "67b56589a45103f891bdee7c0546e5d40bc02001"


def git(**kw) -> GitPushed:
    return GitPushed(delivery_id=DELIVERY, source="gitea", repo="example/example", clone_url=CLONE,
                     pusher="example", **kw)


def headers(event: str, body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"x-gitea-event": event, "x-gitea-delivery": DELIVERY, "x-gitea-signature": hex256(secret, body)}


CASES = {
    "gitea/push.json": ("push", git(
        ref="refs/heads/master", before=ZERO_SHA, after=HEAD, changed_paths=("example",),
        paths_complete=False)),
    "gitea/create-branch.json": ("create", git(
        ref="refs/heads/master", before=ZERO_SHA, after=HEAD, changed_paths=(), paths_complete=False)),
    "gitea/delete-branch.json": ("delete", git(
        ref="refs/heads/example3", before=ZERO_SHA, after=ZERO_SHA, changed_paths=(), paths_complete=False)),
    "gitea/push.legacy-secret-in-body.json": ("push", GitPushed(
        repo="markus/de.mfelten.profile", ref="refs/heads/master",
        before="32d15dcc85bae9e1305d4cca8273bc503caa4ee6", after="32d15dcc85bae9e1305d4cca8273bc503caa4ee6",
        changed_paths=(), pusher="markus", delivery_id=DELIVERY, source="gitea",
        clone_url="https://mfelten.dynv6.net/services/git/markus/de.mfelten.profile.git",
        paths_complete=False)),  # its commits list no added/modified/removed
}
FIXTURES_COVERED = {*CASES, "forgejo/push.headers.docs.json"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_fixture(name):
    event_type, expected = CASES[name]
    body = fixture_bytes(name)
    parsed = deliver(GITEA, headers(event_type, body), body)
    assert parsed.events == (expected,)
    assert (parsed.delivery_id, parsed.event_type) == (DELIVERY, event_type)


def test_secret_inside_body_is_not_authentication():
    body = fixture_bytes("gitea/push.legacy-secret-in-body.json")
    body_secret = fixture_json("gitea/push.legacy-secret-in-body.json")["secret"]
    with pytest.raises(SignatureError, match="missing signature header"):
        GITEA.verify({"x-gitea-event": "push"}, body, Secrets(body_secret))


def test_secret_inside_body_does_not_rescue_a_bad_signature():
    body = fixture_bytes("gitea/push.legacy-secret-in-body.json")
    body_secret = fixture_json("gitea/push.legacy-secret-in-body.json")["secret"]
    with pytest.raises(SignatureError):
        GITEA.verify(headers("push", body, secret=OTHER), body, Secrets(body_secret))


def test_hub_signature_256_is_accepted():
    body = fixture_bytes("gitea/push.json")
    GITEA.verify({"x-hub-signature-256": hub256(SECRET, body)}, body, Secrets(SECRET))


def test_tampered_body_is_rejected():
    body = fixture_bytes("gitea/push.json")
    with pytest.raises(SignatureError):
        GITEA.verify(headers("push", body), body + b"\n", Secrets(SECRET))


def test_previous_secret_is_accepted():
    body = fixture_bytes("gitea/push.json")
    GITEA.verify(headers("push", body, secret=OTHER), body, Secrets("new", previous=OTHER))


def test_forgejo_prefers_its_own_headers():
    body = fixture_bytes("gitea/push.json")
    sent = fixture_headers("forgejo/push.headers.docs.json") | {
        "x-forgejo-signature": hex256(SECRET, body), "x-gitea-signature": "0" * 64,
        "x-forgejo-delivery": "forgejo-id", "x-forgejo-event": "push", "x-gitea-event": "issues"}
    parsed = deliver(FORGEJO, sent, body)
    assert parsed.delivery_id == "forgejo-id"
    assert parsed.events[0].source == "forgejo"
    assert parsed.event_type == "push"


def test_forgejo_documented_headers_give_delivery_and_event():
    sent = fixture_headers("forgejo/push.headers.docs.json")
    parsed = FORGEJO.parse(sent, fixture_bytes("gitea/push.json"))
    assert parsed.delivery_id == DELIVERY
    assert parsed.events[0].after == HEAD


def test_forgejo_falls_back_to_gitea_signature():
    body = fixture_bytes("gitea/push.json")
    FORGEJO.verify({"x-gitea-signature": hex256(SECRET, body)}, body, Secrets(SECRET))


def test_forgejo_rejects_wrong_signature_even_if_gitea_header_is_right():
    body = fixture_bytes("gitea/push.json")
    sent = {"x-forgejo-signature": hex256(OTHER, body), "x-gitea-signature": hex256(SECRET, body)}
    with pytest.raises(SignatureError, match="x-forgejo-signature"):
        FORGEJO.verify(sent, body, Secrets(SECRET))


def test_total_commits_beyond_the_list_marks_paths_incomplete():
    data = fixture_json("gitea/push.json") | {"before": "a" * 40, "total_commits": 7}
    event = GITEA.parse({"x-gitea-event": "push"}, json.dumps(data).encode()).events[0]
    assert event.paths_complete is False


def test_ordinary_push_with_full_list_is_complete():
    data = fixture_json("gitea/push.json") | {"before": "a" * 40}
    event = GITEA.parse({"x-gitea-event": "push"}, json.dumps(data).encode()).events[0]
    assert event.paths_complete is True and event.changed_paths == ("example",)


def test_unhandled_event_is_ignored():
    parsed = GITEA.parse({"x-gitea-event": "issues"}, b"{}")
    assert parsed.ignored == "event type issues is not handled"
