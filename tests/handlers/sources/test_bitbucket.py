"""Bitbucket Cloud and Data Center: sha256 X-Hub-Signature, one event per ref change."""

from __future__ import annotations

import json

import pytest

from handlers.errors import MalformedPayload, SignatureError
from handlers.events import ZERO_SHA, GitPushed
from handlers.sources import SOURCES
from handlers.sources.base import Secrets
from tests.handlers.sources.helpers import OTHER, SECRET, deliver, hub256
from tests.webhook_fixtures import fixture_bytes, fixture_headers, fixture_json

SOURCE = SOURCES["bitbucket"]
REQUEST = "e7a1daa7-a80d-4353-8c9b-32f728d89086"


def headers(event: str, body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"x-event-key": event, "x-request-uuid": REQUEST, "x-hub-signature": hub256(secret, body)}


def git(**kw) -> GitPushed:
    return GitPushed(delivery_id=REQUEST, source="bitbucket", changed_paths=(), paths_complete=False, **kw)


CASES = {
    "bitbucket-cloud/repo-push.json": ("repo:push", git(
        repo="arlac77/npm-package-template", ref="refs/heads/master",
        before="c8a213d74c5864c3ee208a3829eb343a492a47fd", after="cb447e17dcaabb8a0ec2621f1c55d55fe3480a76",
        pusher="arlac77", clone_url="https://bitbucket.org/arlac77/npm-package-template.git")),
    "bitbucket-cloud/repo-push.atlassian-docs-sample.json": ("repo:push", git(
        repo="team_name/repo_name", ref="refs/heads/name-of-branch",
        before="1e65c05c1d5171631d92438a13901ca7dae9618c", after="709d658dc5b6d6afcd46049c2f332ee3f515a67d",
        pusher="emmap1", clone_url="https://bitbucket.org/team_name/repo_name.git")),
    "bitbucket-dc/repo-refs_changed.json": ("repo:refs_changed", git(
        repo="~gopher/webhook-test", ref="refs/heads/feature/wip",
        before="32a0b8a740c2963c6f56bd8baf3dc05683d299e0", after=ZERO_SHA, pusher="gopher",
        clone_url="https://server.bitbucket.local/scm/~gopher/webhook-test.git")),
}
FIXTURES_COVERED = {*CASES, "bitbucket-cloud/repo-push.headers.json"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_fixture(name):
    event_type, expected = CASES[name]
    body = fixture_bytes(name)
    parsed = deliver(SOURCE, headers(event_type, body), body)
    assert parsed.events == (expected,)
    assert (parsed.delivery_id, parsed.event_type) == (REQUEST, event_type)


def test_recorded_cloud_headers_give_delivery_and_event():
    recorded = fixture_headers("bitbucket-cloud/repo-push.headers.json")
    parsed = SOURCE.parse(recorded, fixture_bytes("bitbucket-cloud/repo-push.json"))
    assert parsed.delivery_id == REQUEST and parsed.event_type == "repo:push"


def test_recorded_pre_2023_cloud_delivery_has_no_signature_and_is_rejected():
    recorded = fixture_headers("bitbucket-cloud/repo-push.headers.json")
    with pytest.raises(SignatureError, match="missing signature header"):
        SOURCE.verify(recorded, fixture_bytes("bitbucket-cloud/repo-push.json"), Secrets(SECRET))


def test_data_center_request_id_is_the_delivery_id():
    sent = {"x-event-key": "repo:refs_changed", "x-request-id": "dc-1"}
    assert SOURCE.parse(sent, fixture_bytes("bitbucket-dc/repo-refs_changed.json")).delivery_id == "dc-1"


def test_signature_256_header_is_also_read():
    body = fixture_bytes("bitbucket-cloud/repo-push.json")
    SOURCE.verify({"x-hub-signature-256": hub256(SECRET, body)}, body, Secrets(SECRET))


def test_wrong_secret_and_tampering_are_rejected():
    body = fixture_bytes("bitbucket-cloud/repo-push.json")
    with pytest.raises(SignatureError):
        SOURCE.verify(headers("repo:push", body, secret=OTHER), body, Secrets(SECRET))
    with pytest.raises(SignatureError):
        SOURCE.verify(headers("repo:push", body), body[:-2], Secrets(SECRET))


def test_previous_secret_is_accepted():
    body = fixture_bytes("bitbucket-dc/repo-refs_changed.json")
    SOURCE.verify(headers("repo:refs_changed", body, secret=OTHER), body, Secrets("new", previous=OTHER))


def test_one_event_per_change_including_tag_creation():
    data = fixture_json("bitbucket-cloud/repo-push.json")
    change = data["push"]["changes"][0]
    tag = {"new": {"type": "tag", "name": "v2.0.0", "target": {"hash": "b" * 40}}, "old": None,
           "created": True, "forced": False, "closed": False}
    data["push"]["changes"] = [change, tag]
    events = SOURCE.parse({"x-event-key": "repo:push"}, json.dumps(data).encode()).events
    assert [(e.ref, e.before, e.after) for e in events] == [
        ("refs/heads/master", change["old"]["target"]["hash"], change["new"]["target"]["hash"]),
        ("refs/tags/v2.0.0", ZERO_SHA, "b" * 40),
    ]


def test_cloud_branch_close_is_a_deletion():
    data = fixture_json("bitbucket-cloud/repo-push.json")
    data["push"]["changes"][0]["new"] = None
    event = SOURCE.parse({"x-event-key": "repo:push"}, json.dumps(data).encode()).events[0]
    assert event.deleted and event.ref == "refs/heads/master"


def test_ping_is_answered():
    parsed = SOURCE.parse({"x-event-key": "diagnostics:ping"}, b"{}")
    assert parsed.ping and parsed.events == ()


def test_unhandled_event_is_ignored():
    assert SOURCE.parse({"x-event-key": "pullrequest:created"}, b"{}").ignored == (
        "event type pullrequest:created is not handled")


def test_bad_hash_is_malformed():
    data = fixture_json("bitbucket-dc/repo-refs_changed.json")
    data["changes"][0]["fromHash"] = "32a0b8a"
    with pytest.raises(MalformedPayload, match="^before: "):
        SOURCE.parse({"x-event-key": "repo:refs_changed"}, json.dumps(data).encode())


def test_change_side_without_hash_is_malformed_not_a_deletion():
    data = fixture_json("bitbucket-cloud/repo-push.json")
    del data["push"]["changes"][0]["new"]["target"]
    with pytest.raises(MalformedPayload, match="new.target.hash|target.hash"):
        SOURCE.parse({"x-event-key": "repo:push"}, json.dumps(data).encode())
