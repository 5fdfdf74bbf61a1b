"""Values from payloads never reach git or buildah as options or escaping paths: refs, tags, image
names, shas, clone URLs and changed paths are validated at the receiver (400 for an authentic
payload, nothing recorded, nothing enqueued) and at the operator API; and no code path builds a
shell command line."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from devstack.stack import Stack
from service.app import create_app
from service.broker import NAMESPACE, QUEUE_EVENTS
from service.config import parse_config
from tests.webhook_fixtures import fixture_json

SECRET = "injection-test-secret"
TOKEN = "injection-test-api-token"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def client(tmp_path: Path, stack: Stack, redis_client) -> Iterator[TestClient]:
    (tmp_path / "secret").write_text(SECRET)
    (tmp_path / "token").write_text(TOKEN)
    config = parse_config({
        "state_dir": str(tmp_path / "state"),
        "server": {"api_token": {"file": str(tmp_path / "token")}},
        "redis": {"url": stack.redis.url},
        "receivers": [{"source": "github", "secret": {"file": str(tmp_path / "secret")}},
                      {"source": "registry", "secret": {"file": str(tmp_path / "secret")}}],
        "repos": [{"name": "app", "url": "https://github.com/acme/app.git", "match": ["acme/app"],
                   "branches": ["main"], "tags": ".*"}],
        "environments": [{"name": "staging", "git": {"url": "http://127.0.0.1:1/manifests.git"},
                          "images": [{"image": "registry.example.com/acme/app"}]}],
    })
    with TestClient(create_app(config)) as c:
        yield c


def github(mutate: Callable[[dict[str, Any]], None]) -> tuple[bytes, dict[str, str]]:
    payload = fixture_json("github/push-branch.json")
    payload["ref"] = "refs/heads/main"
    payload["repository"]["full_name"] = "acme/app"
    payload["repository"]["clone_url"] = "https://github.com/acme/app.git"
    mutate(payload)
    body = json.dumps(payload).encode()
    sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, {"X-GitHub-Event": "push", "X-GitHub-Delivery": "d-inj", "X-Hub-Signature-256": sig,
                  "Content-Type": "application/json"}


def setter(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(payload: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = payload
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[last] = value
    return mutate


HOSTILE_PUSHES = {
    "ref as an option": setter("ref", "--upload-pack=touch /tmp/pwned"),
    "ref escaping with ..": setter("ref", "refs/heads/../../config"),
    "branch starting with -": setter("ref", "refs/heads/-rf"),
    "tag starting with -": setter("ref", "refs/tags/--exec=x"),
    "sha as an option": setter("after", "--output=/tmp/pwned"),
    "clone url as an option": setter("repository.clone_url", "--upload-pack=touch /tmp/pwned"),
    "clone url with ext transport": setter("repository.clone_url", "ext::sh -c touch% /tmp/pwned"),
    "changed path escaping": setter("commits.0.modified", ["../../etc/passwd"]),
    "changed path absolute": setter("commits.0.added", ["/etc/passwd"]),
    "head commit path escaping": setter("head_commit.removed", ["a/../../../b"]),
}


def nothing_recorded(redis_client) -> bool:
    return redis_client.llen(f"{NAMESPACE}:{QUEUE_EVENTS}") == 0 and redis_client.zcard("shipline:events") == 0


def test_a_clean_push_is_accepted(client: TestClient, redis_client) -> None:
    answer = client.post("/hooks/github", content=github(lambda p: None)[0], headers=github(lambda p: None)[1])
    assert answer.status_code == 202, answer.text


@pytest.mark.parametrize("case", sorted(HOSTILE_PUSHES))
def test_hostile_push_fields_are_400_and_never_enqueued(client: TestClient, redis_client, case: str) -> None:
    body, headers = github(HOSTILE_PUSHES[case])
    answer = client.post("/hooks/github", content=body, headers=headers)
    assert answer.status_code == 400, (case, answer.status_code, answer.text)
    assert nothing_recorded(redis_client)


def registry(repository: str, tag: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"events": [{
        "id": "e-1", "action": "push", "timestamp": "2024-01-01T00:00:00Z",
        "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "a" * 64,
                   "repository": repository, "tag": tag,
                   "url": f"https://registry.example.com/v2/{repository}/manifests/x"},
        "request": {"host": "registry.example.com"}}]}).encode()
    return body, {"Authorization": f"Bearer {SECRET}",
                  "Content-Type": "application/vnd.docker.distribution.events.v1+json"}


@pytest.mark.parametrize(("repository", "tag"), [
    ("acme/app", "-rf"), ("acme/app", "--authfile=/etc/shadow"), ("acme/app", "1.0/../../x"),
    ("../acme/app", "1.0.0"), ("acme/app --tls-verify=false", "1.0.0"), ("/etc/passwd", "1.0.0"),
])
def test_hostile_image_names_and_tags_are_400(client: TestClient, redis_client, repository: str, tag: str) -> None:
    answer = client.post("/hooks/registry", content=registry(repository, tag)[0], headers=registry(repository, tag)[1])
    assert answer.status_code == 400, answer.text
    assert nothing_recorded(redis_client)


@pytest.mark.parametrize("event", [
    {"type": "image_pushed", "image": "registry.example.com/acme/app", "tag": "-rf"},
    {"type": "image_pushed", "image": "--creds=x registry.example.com/acme/app", "tag": "1.0.0"},
    {"type": "git_pushed", "repo": "acme/app", "ref": "--upload-pack=x", "sha": "a" * 40},
    {"type": "git_pushed", "repo": "acme/app", "ref": "refs/heads/../x", "sha": "a" * 40},
    {"type": "git_pushed", "repo": "acme/app", "ref": "refs/heads/main", "sha": "-x"},
])
def test_hostile_api_events_are_400(client: TestClient, redis_client, event: dict[str, str]) -> None:
    answer = client.post("/api/events", json=event, headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 400, answer.text
    assert nothing_recorded(redis_client)


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/api/events/0123/replay"), ("POST", "/api/events"), ("GET", "/api/events"),
    ("GET", "/api/targets"), ("POST", "/api/promote"), ("GET", "/api/stream"),
])
@pytest.mark.parametrize("auth", [None, "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x"])
def test_replay_and_admin_api_require_the_token(client: TestClient, redis_client, method: str, path: str,
                                                auth: str | None) -> None:
    headers = {"Authorization": auth} if auth else {}
    assert client.request(method, path, headers=headers, json={}).status_code == 401
    assert nothing_recorded(redis_client)


SHELL = re.compile(r"shell\s*=\s*True|os\.system\(|os\.popen\(|subprocess\.getoutput|subprocess\.getstatusoutput"
                   r"|pty\.spawn|commands\.getoutput")


def test_no_shell_strings_anywhere_in_the_service() -> None:
    sources = [p for d in ("service", "handlers") for p in (ROOT / d).rglob("*.py")]
    assert len(sources) > 50
    hits = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}" for p in sources
            for n, line in enumerate(p.read_text().splitlines(), 1) if SHELL.search(line)]
    assert not hits, hits


def test_subprocess_calls_take_argument_lists() -> None:
    """Every ``subprocess.run/Popen/check_*`` and GitPython ``execute`` gets a list, never a str."""
    call = re.compile(r"(subprocess\.(run|Popen|check_output|check_call|call)|\.execute)\(\s*(f?[\"'])")
    sources = [p for d in ("service", "handlers") for p in (ROOT / d).rglob("*.py")]
    hits = [f"{p.relative_to(ROOT)}:{n}" for p in sources
            for n, line in enumerate(p.read_text().splitlines(), 1) if call.search(line)]
    assert not hits, hits
