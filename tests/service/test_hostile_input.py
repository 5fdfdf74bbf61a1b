"""Hostile input over every /hooks/* source and the API: never a 5xx, never an enqueue without a
valid signature, whatever the bodies, headers and encodings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from devstack.stack import Stack
from handlers.sources import SOURCES
from service.app import create_app
from service.broker import NAMESPACE, QUEUE_EVENTS
from service.config import parse_config

SECRET = "fuzz-secret"
HEADER_NAMES = [
    "x-hub-signature-256", "x-hub-signature", "x-github-event", "x-github-delivery", "x-gitlab-token",
    "x-gitlab-event", "webhook-id", "webhook-timestamp", "webhook-signature", "x-gitea-signature",
    "x-gitea-event", "x-forgejo-signature", "x-event-key", "authorization", "x-signature", "content-type",
    "x-jfrog-event-auth", "x-request-uuid", "content-encoding",
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
bodies = st.one_of(
    st.binary(max_size=2048),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.integers(1, 5000).map(lambda n: b"[" * n + b"]" * n),  # deep nesting
    st.integers(1, 3000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.text(max_size=500).map(lambda t: t.encode("utf-16", errors="surrogatepass")),
)
headers = st.dictionaries(st.sampled_from(HEADER_NAMES),
                          st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80),
                          max_size=6)


@pytest.fixture(scope="module")
def app_client(stack: Stack, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("fuzz")
    secret = tmp / "secret"
    secret.write_text(SECRET)
    receivers = [{"source": s, "secret": {"file": str(secret)}} for s in SOURCES
                 if s not in ("dockerhub", "quay")]
    receivers += [{"source": s, "path_token": {"file": str(secret)}} for s in ("dockerhub", "quay")]
    token = tmp / "api"
    token.write_text("fuzz-api-token")
    cfg = parse_config({"redis": {"url": stack.redis.url}, "receivers": receivers, "state_dir": str(tmp),
                        "server": {"api_token": {"file": str(token)}, "max_body_bytes": 65536},
                        "repos": [{"name": "any", "url": "x", "match": ["agoda-com/samsahai-example"]}]})
    with TestClient(create_app(cfg), raise_server_exceptions=False) as client:
        yield client


def queue_length(stack: Stack) -> int:
    import redis

    return int(redis.Redis.from_url(stack.redis.url).llen(f"{NAMESPACE}:{QUEUE_EVENTS}"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(source=st.sampled_from(sorted(SOURCES)), body=bodies, hdrs=headers)
def test_unsigned_garbage_never_5xx_never_enqueued(app_client: TestClient, stack: Stack, source: str,
                                                   body: bytes, hdrs: dict[str, str]) -> None:
    before = queue_length(stack)
    answer = app_client.post(f"/hooks/{source}", content=body, headers=hdrs)
    assert answer.status_code < 500, answer.text
    assert answer.status_code in (401, 413, 400), (answer.status_code, answer.text)
    assert queue_length(stack) == before


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, event=st.sampled_from(["push", "ping", "create", "delete", "package", "issues", "x" * 300]))
def test_signed_garbage_is_4xx_or_ignored_never_5xx(app_client: TestClient, body: bytes, event: str) -> None:
    import hashlib
    import hmac

    sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    answer = app_client.post("/hooks/github", content=body,
                             headers={"x-github-event": event, "x-hub-signature-256": sig})
    assert answer.status_code < 500, answer.text


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["/api/events", "/api/targets", "/api/events/x", "/api/stream"]),
       auth=st.text(max_size=60))
def test_api_without_the_token_is_401(app_client: TestClient, path: str, auth: str) -> None:
    answer = app_client.get(path, headers={"authorization": auth.encode("ascii", "ignore").decode()})
    assert answer.status_code == 401


def test_huge_json_is_413(app_client: TestClient) -> None:
    body = json.dumps({"a": ["x" * 1000] * 100}).encode()
    assert app_client.post("/hooks/github", content=body).status_code == 413


def test_paths_dont_escape(app_client: TestClient, tmp_path: Path) -> None:
    for path in ("/hooks/../api/events", "/hooks/github/..%2f..%2fetc", "/hooks/%2e%2e/x"):
        assert app_client.post(path, content=b"{}").status_code in (401, 404, 405)
