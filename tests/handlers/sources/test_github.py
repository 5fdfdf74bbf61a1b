"""GitHub: signature scheme, push/ping/create/delete events and GHCR package events."""

from __future__ import annotations

import json

import pytest

from handlers.errors import MalformedPayload, SignatureError
from handlers.events import ZERO_SHA, GitPushed, ImagePushed
from handlers.sources import SOURCES
from handlers.sources.base import Secrets
from tests.handlers.sources.helpers import OTHER, SECRET, deliver, hex256, hub256
from tests.webhook_fixtures import fixture_bytes, fixture_headers, fixture_json

SOURCE = SOURCES["github"]
HOOK, DELIVERY = "321104258", "40731f00-2623-11ec-8a58-45788bc19979"
DID = f"{HOOK}:{DELIVERY}"
HELLO = "https://github.com/Codertocat/Hello-World.git"
TEST_REPO = "https://github.com/jessesuen/test-repo.git"
ARGO_PATHS = (
    "ksapps/test-app/app.yaml",
    "ksapps/test-app/environments/staging-argocd-demo/main.jsonnet",
    "ksapps/test-app/environments/staging-argocd-demo/params.libsonnet",
)


def git(**kw) -> GitPushed:
    return GitPushed(delivery_id=DID, source="github", **kw)


def image(**kw) -> ImagePushed:
    return ImagePushed(delivery_id=DID, source="github", **kw)


def headers(event: str, body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"x-github-event": event, "x-github-delivery": DELIVERY, "x-github-hook-id": HOOK,
            "x-hub-signature-256": hub256(secret, body)}


PUSHES = {
    "github/push-branch.json": git(
        repo="agoda-com/samsahai-example", ref="refs/heads/phantomnat-patch-1",
        before="d8e0d9260e58f7882394751ce1895378c3b3750d", after="32c457ac10563a7d2913916625db5526cde7b771",
        changed_paths=("samsahai.yaml",), pusher="phantomnat",
        clone_url="https://github.com/agoda-com/samsahai-example.git"),
    "github/push-branch.go-playground.json": git(
        repo="binkkatal/sample_app", ref="refs/heads/master",
        before="737d38c599c1b2991664dfc6155d6bf516fcce36", after="fd489864e7642b48eaad6e3f155c10e46810ec72",
        changed_paths=(".razorops.yaml", "app/controllers/application_controller.rb"), pusher="binkkatal",
        clone_url="https://github.com/binkkatal/sample_app.git"),
    "github/push-branch-forced.json": git(
        repo="jessesuen/test-repo", ref="refs/heads/master",
        before="d5c1ffa8e294bc18c639bfb4e0df499251034414", after="63738bb582c8b540af7bcfc18f87c575c3ed66e0",
        changed_paths=ARGO_PATHS, pusher="jessesuen", clone_url=TEST_REPO, forced=True,
        paths_complete=False),
    "github/push-branch-create.json": git(
        repo="Codertocat/Hello-World", ref="refs/heads/master", before=ZERO_SHA,
        after="6113728f27ae82c7b1a177c8d03f9e96e0adf246", changed_paths=("README.md",),
        pusher="Codertocat", clone_url=HELLO, paths_complete=False),
    "github/push-branch-delete.json": git(
        repo="arlac77/npm-template-sync-github-hook", ref="refs/heads/template-sync-1",
        before="0e19c5c2e158421ee2b2dfe0a70c29604b9d0cea", after=ZERO_SHA, changed_paths=(),
        pusher="arlac77", clone_url="https://github.com/arlac77/npm-template-sync-github-hook.git",
        paths_complete=False),
    "github/push-tag.json": git(
        repo="jessesuen/test-repo", ref="refs/tags/v1.0", before=ZERO_SHA,
        after="63738bb582c8b540af7bcfc18f87c575c3ed66e0", changed_paths=ARGO_PATHS, pusher="jessesuen",
        clone_url=TEST_REPO, paths_complete=False),
    "github/push-tag-delete.json": git(
        repo="Codertocat/Hello-World", ref="refs/tags/simple-tag",
        before="6113728f27ae82c7b1a177c8d03f9e96e0adf246", after=ZERO_SHA, changed_paths=(),
        pusher="Codertocat", clone_url=HELLO, paths_complete=False),
}
OTHER_EVENTS = {
    "github/delete-tag.json": ("delete", git(
        repo="Codertocat/Hello-World", ref="refs/tags/simple-tag", before=ZERO_SHA, after=ZERO_SHA,
        changed_paths=(), pusher="Codertocat", clone_url=HELLO, paths_complete=False)),
    "ghcr/package-container.keel.json": ("package", image(
        registry="ghcr.io", repository="utaitebox/utaitebox-server", tag="3.2.1",
        digest="sha256:7d3848ba2f2e7f69bebb4b576e5fad0379b64a0b1512aee6ad0ec9e7c6319fed")),
    "ghcr/registry_package-published.docker-pkg-legacy.keel.json": ("registry_package", image(
        registry="ghcr.io", repository="dingggu/utaitebox/server", tag="1.2.3", digest="")),
}
IGNORED = {
    "github/create-tag.json": ("create", "create events carry no commit sha"),
    "ghcr/package-published.octokit-sample.json": ("package", "package type 'npm' is not a container image"),
    "ghcr/registry_package-published.octokit-sample.json": (
        "registry_package", "package type 'npm' is not a container image"),
}
FIXTURES_COVERED = {
    *PUSHES, *OTHER_EVENTS, *IGNORED, "github/ping.json", "github/signature-test-vector.json",
    "github/push-branch.headers.json", "ghcr/registry_package-published.headers.json",
}


@pytest.mark.parametrize("name", sorted(PUSHES))
def test_push_fixture(name):
    body = fixture_bytes(name)
    parsed = deliver(SOURCE, headers("push", body), body)
    assert parsed.events == (PUSHES[name],)
    assert (parsed.delivery_id, parsed.event_type, parsed.ignored, parsed.ping) == (DID, "push", None, False)


@pytest.mark.parametrize("name", sorted(OTHER_EVENTS))
def test_event_fixture(name):
    event_type, expected = OTHER_EVENTS[name]
    body = fixture_bytes(name)
    parsed = deliver(SOURCE, headers(event_type, body), body)
    assert parsed.events == (expected,)
    assert parsed.event_type == event_type


@pytest.mark.parametrize("name", sorted(IGNORED))
def test_ignored_fixture(name):
    event_type, reason = IGNORED[name]
    body = fixture_bytes(name)
    parsed = deliver(SOURCE, headers(event_type, body), body)
    assert parsed.events == ()
    assert parsed.ignored is not None and parsed.ignored.startswith(reason)
    assert parsed.delivery_id == DID


def test_ping_fixture():
    body = fixture_bytes("github/ping.json")
    parsed = deliver(SOURCE, headers("ping", body), body)
    assert parsed.ping and parsed.events == () and parsed.ignored is None


def test_published_test_vector_verifies():
    vector = fixture_json("github/signature-test-vector.json")
    body = vector["payload"].encode()
    assert hex256(vector["secret"], body) == vector["signature"]
    SOURCE.verify({"x-hub-signature-256": vector["X-Hub-Signature-256"]}, body, Secrets(vector["secret"]))


def test_published_test_vector_fails_with_another_secret():
    vector = fixture_json("github/signature-test-vector.json")
    with pytest.raises(SignatureError, match="does not match"):
        SOURCE.verify({"x-hub-signature-256": vector["X-Hub-Signature-256"]}, b"Hello, World!", Secrets(OTHER))


def test_tampered_body_is_rejected():
    body = fixture_bytes("github/push-branch.json")
    with pytest.raises(SignatureError):
        SOURCE.verify(headers("push", body), body.replace(b"phantomnat", b"attacker"), Secrets(SECRET))


def test_wrong_secret_is_rejected():
    body = fixture_bytes("github/push-branch.json")
    with pytest.raises(SignatureError):
        SOURCE.verify(headers("push", body, secret=OTHER), body, Secrets(SECRET))


def test_previous_secret_is_accepted_during_rotation():
    body = fixture_bytes("github/push-branch.json")
    SOURCE.verify(headers("push", body, secret=OTHER), body, Secrets("new-secret", previous=OTHER))


def test_missing_signature_header_is_rejected():
    body = fixture_bytes("github/push-branch.json")
    with pytest.raises(SignatureError, match="missing signature header"):
        SOURCE.verify({"x-github-event": "push"}, body, Secrets(SECRET))


def test_signature_without_sha256_prefix_is_rejected():
    body = b"{}"
    with pytest.raises(SignatureError, match="sha256="):
        SOURCE.verify({"x-hub-signature-256": hex256(SECRET, body)}, body, Secrets(SECRET))


def test_legacy_sha1_only_delivery_is_refused_with_explanation():
    """The recorded 2019 delivery carries only X-Hub-Signature (sha1)."""
    recorded = fixture_headers("github/push-branch.headers.json")
    assert "x-hub-signature-256" not in recorded
    with pytest.raises(SignatureError, match="X-Hub-Signature-256 .sha256. is required"):
        SOURCE.verify(recorded, fixture_bytes("github/push-branch.json"), Secrets(SECRET))


def test_recorded_headers_give_delivery_id_with_hook_id():
    recorded = fixture_headers("ghcr/registry_package-published.headers.json")
    body = json.dumps({"action": "published", "registry_package": {"package_type": "maven"}}).encode()
    parsed = SOURCE.parse(recorded, body)
    assert parsed.delivery_id == DID
    assert parsed.event_type == "registry_package"


def test_delivery_id_without_hook_id_is_the_delivery_guid():
    recorded = fixture_headers("github/push-branch.headers.json")
    parsed = SOURCE.parse(recorded, fixture_bytes("github/push-branch.json"))
    assert parsed.delivery_id == "8e0dece0-cfbd-11e9-8e4c-f48db7a5cca7"
    assert parsed.events[0].delivery_id == parsed.delivery_id


def test_unhandled_event_type_is_ignored():
    parsed = SOURCE.parse({"x-github-event": "issues"}, b"{}")
    assert parsed.ignored == "event type issues is not handled"


def test_missing_event_header_is_malformed():
    with pytest.raises(MalformedPayload, match="x-github-event"):
        SOURCE.parse({}, b"{}")


def test_twenty_commits_mark_paths_incomplete():
    data = fixture_json("github/push-branch.json")
    data["commits"] = data["commits"] * 20
    parsed = SOURCE.parse({"x-github-event": "push"}, json.dumps(data).encode())
    assert parsed.events[0].paths_complete is False
    assert parsed.events[0].changed_paths == ("samsahai.yaml",)


@pytest.mark.parametrize(("path", "value", "field"), [
    ("ref", "refs/heads/../../etc", "ref"),
    ("after", "not-a-sha", "after"),
    ("repository.full_name", "a b/c", "repo"),
    ("repository.clone_url", "ext::sh -c touch% /tmp/x", "clone_url"),
])
def test_unsafe_push_field_is_malformed_and_named(path, value, field):
    data = fixture_json("github/push-branch.json")
    node = data
    *parents, last = path.split(".")
    for key in parents:
        node = node[key]
    node[last] = value
    with pytest.raises(MalformedPayload, match=f"^{field}: "):
        SOURCE.parse({"x-github-event": "push"}, json.dumps(data).encode())


def test_path_traversal_in_commit_is_malformed():
    data = fixture_json("github/push-branch.json")
    data["commits"][0]["modified"] = ["../../etc/passwd"]
    with pytest.raises(MalformedPayload, match="commits"):
        SOURCE.parse({"x-github-event": "push"}, json.dumps(data).encode())


def test_untagged_container_version_is_ignored():
    data = fixture_json("ghcr/package-container.keel.json")
    data["action"] = "published"
    data["package"]["package_version"]["container_metadata"]["tag"]["name"] = ""
    parsed = SOURCE.parse({"x-github-event": "package"}, json.dumps(data).encode())
    assert parsed.ignored == "container package version has no tag (untagged manifest)"


def test_unhandled_package_action_is_ignored():
    data = fixture_json("ghcr/package-container.keel.json")
    data["action"] = "deleted"
    parsed = SOURCE.parse({"x-github-event": "package"}, json.dumps(data).encode())
    assert parsed.ignored == "package action 'deleted' is not handled"
