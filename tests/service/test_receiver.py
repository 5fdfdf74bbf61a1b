"""The receiver end to end over HTTP against the real Redis: what is accepted is durable and
enqueued exactly once; what is forged, oversize or malformed is refused and leaves no trace."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from devstack.process import free_port
from devstack.redis import RedisServer
from devstack.stack import Stack
from service.app import create_app
from service.broker import NAMESPACE, QUEUE_EVENTS
from service.config import Config, parse_config
from service.store import EventStore
from tests.webhook_fixtures import fixture_bytes
from tests.webhook_fixtures import fixture_json as load_fixture

SECRET = "s3cr3t-for-tests"
API_TOKEN = "api-token-for-tests"
QUEUE_KEY = f"{NAMESPACE}:{QUEUE_EVENTS}"


def make_config(tmp_path: Path, redis_url: str, **server: object) -> Config:
    secret = tmp_path / "hook-secret"
    secret.write_text(SECRET)
    token = tmp_path / "api-token"
    token.write_text(API_TOKEN)
    return parse_config({
        "state_dir": str(tmp_path / "state"),
        "server": {"api_token": {"file": str(token)}, **server},
        "redis": {"url": redis_url},
        "receivers": [
            {"source": "github", "secret": {"file": str(secret)}},
            {"source": "github", "name": "nosecret"},
            {"source": "registry", "secret": {"file": str(secret)}},
            {"source": "dockerhub", "path_token": {"file": str(secret)}},
        ],
        "repos": [{"name": "hello", "url": "https://github.com/agoda-com/samsahai-example.git",
                   "branches": ["main"]}],
        "environments": [{"name": "staging", "git": {"url": "http://127.0.0.1:1/manifests.git"},
                          "images": [{"image": "127.0.0.1:5000/demo/app"}]}],
    })


def github_push(delivery: str = "d-1") -> tuple[bytes, dict[str, str]]:
    payload = load_fixture("github/push-branch.json")
    payload["ref"] = "refs/heads/main"
    body = json.dumps(payload).encode()
    sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, {"X-GitHub-Event": "push", "X-GitHub-Delivery": delivery, "X-GitHub-Hook-ID": "42",
                  "X-Hub-Signature-256": sig, "Content-Type": "application/json"}


@pytest.fixture
def client(tmp_path: Path, stack: Stack, redis_client) -> TestClient:
    app = create_app(make_config(tmp_path, stack.redis.url, max_body_bytes=64 * 1024))
    with TestClient(app) as c:
        yield c


def queued(redis_client) -> int:
    return int(redis_client.llen(QUEUE_KEY))


def test_signed_push_is_recorded_and_enqueued(client: TestClient, redis_client) -> None:
    body, headers = github_push()
    answer = client.post("/hooks/github", content=body, headers=headers)
    assert answer.status_code == 202, answer.text
    event_id = answer.json()["event_id"]
    assert queued(redis_client) == 1
    record = EventStore(redis_client).get(event_id)
    assert record is not None and record.status == "enqueued"
    assert record.event["ref"] == "refs/heads/main"
    assert record.headers["x-hub-signature-256"] == "***"


def test_wrong_signature_is_401_and_nothing_enqueued(client: TestClient, redis_client) -> None:
    body, headers = github_push()
    answer = client.post("/hooks/github", content=body + b" ", headers=headers)
    assert answer.status_code == 401
    headers["X-Hub-Signature-256"] = "sha256=" + "0" * 64
    assert client.post("/hooks/github", content=body, headers=headers).status_code == 401
    del headers["X-Hub-Signature-256"]
    assert client.post("/hooks/github", content=body, headers=headers).status_code == 401
    assert queued(redis_client) == 0
    assert redis_client.zcard("shipline:events") == 0


def test_receiver_without_secret_refuses_everything(client: TestClient, redis_client) -> None:
    body, headers = github_push()
    assert client.post("/hooks/github/nosecret", content=body, headers=headers).status_code == 401
    assert queued(redis_client) == 0


def test_oversize_body_is_413_declared_or_streamed(client: TestClient, redis_client) -> None:
    big = b"{" + b" " * (70 * 1024) + b"}"
    assert client.post("/hooks/github", content=big, headers={"X-GitHub-Event": "push"}).status_code == 413

    def chunks():
        for _ in range(70):
            yield b" " * 1024

    assert client.post("/hooks/github", content=chunks(), headers={"X-GitHub-Event": "push"}).status_code == 413
    assert queued(redis_client) == 0


def test_authentic_but_malformed_is_400(client: TestClient, redis_client) -> None:
    body = b"not json at all"
    sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    answer = client.post("/hooks/github", content=body,
                         headers={"X-GitHub-Event": "push", "X-Hub-Signature-256": sig})
    assert answer.status_code == 400
    assert queued(redis_client) == 0


def test_duplicate_delivery_answers_200_and_enqueues_nothing_more(client: TestClient, redis_client) -> None:
    body, headers = github_push("same")
    first = client.post("/hooks/github", content=body, headers=headers)
    second = client.post("/hooks/github", content=body, headers=headers)
    assert first.status_code == 202
    assert second.status_code == 200
    assert second.json() == {"duplicate": first.json()["event_id"]}
    # a redelivery under a new delivery id is the same (repo, ref, after): still a duplicate
    body, headers = github_push("other-delivery")
    assert client.post("/hooks/github", content=body, headers=headers).status_code == 200
    assert queued(redis_client) == 1


def test_unconfigured_repo_is_ignored_with_202(client: TestClient, redis_client) -> None:
    payload = load_fixture("github/push-branch.json")
    payload["repository"]["full_name"] = "someone/else"
    payload["repository"]["clone_url"] = "https://github.com/someone/else.git"
    body = json.dumps(payload).encode()
    sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    answer = client.post("/hooks/github", content=body,
                         headers={"X-GitHub-Event": "push", "X-Hub-Signature-256": sig})
    assert answer.status_code == 202
    assert "not configured" in answer.json()["ignored"]
    assert queued(redis_client) == 0


def test_ping_is_200(client: TestClient, redis_client) -> None:
    body = json.dumps(load_fixture("github/ping.json")).encode()
    sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    answer = client.post("/hooks/github", content=body, headers={"X-GitHub-Event": "ping", "X-Hub-Signature-256": sig})
    assert answer.status_code == 200
    assert queued(redis_client) == 0


def test_unknown_receiver_is_404(client: TestClient) -> None:
    assert client.post("/hooks/gitlab", content=b"{}").status_code == 404


def test_a_path_token_comes_from_the_path_only(client: TestClient, redis_client) -> None:
    body = fixture_bytes("dockerhub/push.keel.json")
    assert client.post(f"/hooks/dockerhub/default/{SECRET}", content=body).status_code == 202
    assert client.post("/hooks/dockerhub/default/not-the-token", content=body).status_code == 401
    spoofed = {"X-Shipline-Path-Token": SECRET}  # the header the path's token travels in, sent by hand
    assert client.post("/hooks/dockerhub", content=body, headers=spoofed).status_code == 401
    assert client.post("/hooks/dockerhub/default/not-the-token", content=body, headers=spoofed).status_code == 401


def test_other_methods_on_a_hook_path_are_405_and_record_nothing(client: TestClient, redis_client) -> None:
    body, headers = github_push()
    assert client.put("/hooks/github", content=body, headers=headers).status_code == 405
    assert client.get("/hooks/github/default").status_code == 405
    assert queued(redis_client) == 0 and redis_client.zcard("shipline:events") == 0


def test_a_failure_inside_a_delivery_is_a_logged_json_500(client: TestClient, redis_client, caplog,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*args: object) -> None:
        raise RuntimeError("the store exploded")

    monkeypatch.setattr(client.app.state.ingest, "accept", broken)
    body, headers = github_push()
    with caplog.at_level(logging.ERROR, logger="shipline.receiver"):
        answer = client.post("/hooks/github", content=body, headers=headers)
    assert (answer.status_code, answer.json()) == (500, {"error": "internal server error"})
    assert "RuntimeError: the store exploded" in caplog.text
    assert queued(redis_client) == 0


def test_api_needs_token_lists_replays_and_triggers(client: TestClient, redis_client) -> None:
    body, headers = github_push()
    event_id = client.post("/hooks/github", content=body, headers=headers).json()["event_id"]
    assert client.get("/api/events").status_code == 401
    assert client.get("/api/events", headers={"Authorization": "Bearer wrong"}).status_code == 401
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    listed = client.get("/api/events", headers=auth).json()["events"]
    assert [e["id"] for e in listed] == [event_id]
    detail = client.get(f"/api/events/{event_id}", headers=auth).json()
    assert SECRET not in json.dumps(detail)
    replay = client.post(f"/api/events/{event_id}/replay", headers=auth)
    assert replay.status_code == 202 and replay.json()["replay_of"] == event_id
    manual = client.post("/api/events", headers=auth,
                         json={"type": "image_pushed", "image": "127.0.0.1:5000/demo/app", "tag": "1.2.3"})
    assert manual.status_code == 202
    bad = client.post("/api/events", headers=auth, json={"type": "image_pushed", "image": "x/y", "tag": "-rf"})
    assert bad.status_code == 400
    assert queued(redis_client) == 3
    assert client.get("/api/events?source=github", headers=auth).json()["events"][0]["id"] != event_id


def test_redis_down_gives_503_then_accepts_after_restart(tmp_path: Path) -> None:
    own = RedisServer(tmp_path / "redis", free_port())
    own.start()
    app = create_app(make_config(tmp_path, own.url))
    with TestClient(app) as c:
        body, headers = github_push("before")
        assert c.post("/hooks/github", content=body, headers=headers).status_code == 202
        own.stop()
        body, headers = github_push("during")
        payload = json.loads(body)
        payload["after"] = "1" * 40
        body = json.dumps(payload).encode()
        headers["X-Hub-Signature-256"] = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert c.post("/hooks/github", content=body, headers=headers).status_code == 503
        assert c.get("/readyz").status_code == 503
        own.start()
        assert c.post("/hooks/github", content=body, headers=headers).status_code == 202
        assert c.get("/readyz").status_code == 200
    import redis

    r = redis.Redis.from_url(own.url)
    assert r.llen(QUEUE_KEY) == 2  # the first one survived the restart (AOF)
    own.stop()


def test_registry_notification_after_real_push_enqueues_one_image_event(
        tmp_path: Path, stack: Stack, redis_client) -> None:

    from devstack.process import wait_until
    from tests.fixtures_stack import ServerThread, build_and_push

    cfg = make_config(tmp_path, stack.redis.url).model_copy(update={
        "receivers": [parse_config({"receivers": [{"source": "registry",
                                                   "secret": {"file": str(stack.secret_file("registry-token"))}}]
                                    }).receivers[0]],
        "environments": [parse_config({"environments": [{
            "name": "staging", "git": {"url": "http://127.0.0.1:1/m.git"},
            "images": [{"image": f"{stack.registry.host}/demo/notified"}]}]}).environments[0]],
    })
    with ServerThread(create_app(cfg), stack.ports.receiver):
        build_and_push(stack, tmp_path, f"{stack.registry.host}/demo/notified:2.0.0", "echo notified > /n")
        store = EventStore(redis_client)
        wait_until(lambda: len(store.list()) >= 1, timeout=20, what="registry notification recorded")
        manifest = httpx.get(f"{stack.registry.url}/v2/demo/notified/manifests/2.0.0",
                             headers={"Accept": "application/vnd.oci.image.manifest.v1+json,"
                                      "application/vnd.docker.distribution.manifest.v2+json"})
        import time

        time.sleep(2)  # let any extra (blob) notifications arrive: none may be enqueued
        events = store.list()
        assert len(events) == 1
        assert events[0].event["tag"] == "2.0.0"
        assert events[0].event["digest"] == manifest.headers["Docker-Content-Digest"]
        assert queued(redis_client) == 1


def test_api_bodies_that_are_not_json_objects_are_400(client: TestClient) -> None:
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    for path in ("/api/events", "/api/promote"):
        assert client.post(path, headers=auth, content=b"[1, 2]").status_code == 400
        assert client.post(path, headers=auth, content=b"not json").status_code == 400
    unknown = client.post("/api/promote", headers=auth, json={"image": "127.0.0.1:5000/demo/app", "to": "nowhere"})
    assert unknown.status_code == 400 and "unknown environment" in unknown.text
