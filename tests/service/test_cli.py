"""The `shipline` CLI as a user runs it: --help everywhere, one clear error line, and the
operator commands against a running receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.process import free_port
from service.app import create_app
from service.config import load_config
from tests.fixtures_stack import ServerThread
from tests.webhook_fixtures import fixture_json

COMMANDS = ["serve", "worker", "up", "down", "events", "replay", "status", "diff", "promote", "logs", "rollback",
            "config check", "dev up", "dev down", "dev status"]


def shipline(*args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    extra = ["--config", str(config)] if config else []
    return subprocess.run([sys.executable, "-m", "service.cli", *args, *extra], capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    done = shipline(*command.split(), "--help")
    assert done.returncode == 0, done.stderr
    assert "Usage:" in done.stdout


def test_a_bad_config_exits_non_zero_with_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "shipline.yaml"
    bad.write_text("server:\n  prot: 1\n")
    done = shipline("config", "check", config=bad)
    assert done.returncode == 1
    assert done.stderr.startswith("error: ")
    assert "server.prot: unknown key" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture
def served(stack, redis_client, tmp_path: Path):
    secret, token = tmp_path / "secret", tmp_path / "token"
    secret.write_text("cli-secret")
    token.write_text("cli-token")
    port = free_port()
    path = tmp_path / "shipline.yaml"
    path.write_text(json.dumps({
        "state_dir": str(tmp_path / "state"), "redis": {"url": stack.redis.url},
        "server": {"port": port, "api_token": {"file": str(token)}},
        "receivers": [{"source": "github", "secret": {"file": str(secret)}}],
        "repos": [{"name": "samsahai", "url": "https://github.com/agoda-com/samsahai-example.git"}],
        "environments": [{"name": "staging", "git": {"url": "http://127.0.0.1:1/m.git"}},
                         {"name": "production", "git": {"url": "http://127.0.0.1:1/m.git"},
                          "render": {"mode": "kluctl", "target": "production"}}],
    }))
    with ServerThread(create_app(load_config(path)), port) as server:
        yield path, server


def test_events_replay_and_status_talk_to_the_receiver(served) -> None:
    import httpx

    path, server = served
    payload = fixture_json("github/push-branch.json")
    payload["ref"] = "refs/heads/main"
    body = json.dumps(payload).encode()
    sig = "sha256=" + hmac.new(b"cli-secret", body, hashlib.sha256).hexdigest()
    event_id = httpx.post(f"{server.url}/hooks/github", content=body,
                          headers={"X-GitHub-Event": "push", "X-Hub-Signature-256": sig}).json()["event_id"]
    listed = shipline("events", "--json", config=path)
    assert listed.returncode == 0, listed.stderr
    assert [e["id"] for e in json.loads(listed.stdout)["events"]] == [event_id]
    human = shipline("events", config=path)
    assert event_id in human.stdout and "agoda-com/samsahai-example" in human.stdout
    replayed = shipline("replay", event_id, config=path)
    assert replayed.returncode == 0 and f"replayed {event_id} as " in replayed.stdout
    status = shipline("status", config=path)
    assert status.returncode == 0 and status.stdout.startswith("staging")
    assert "render kluctl target=production" in status.stdout  # the kluctl target, under its environment
    missing = shipline("replay", "nope", config=path)
    assert missing.returncode == 1 and "404" in missing.stderr and "Traceback" not in missing.stderr


def test_config_check_says_what_would_happen(served) -> None:
    path, _ = served
    done = shipline("config", "check", config=path)
    assert done.returncode == 0, done.stderr
    assert "receiver /hooks/github: verified with file:" in done.stdout
    assert "cli-secret" not in done.stdout
    assert "environment staging:" in done.stdout
    assert "render=kluctl target=production " in done.stdout


def test_the_worker_threads_wait_as_long_as_the_broker_says() -> None:
    import service.cli
    from service.broker import WORKER_THREAD_POLL_MS

    assert str(WORKER_THREAD_POLL_MS) == service.cli.DRAMATIQ_WORKER_TIMEOUT_MS
    probe = ("import os, service.cli; os.environ.setdefault('dramatiq_worker_timeout', "
             "service.cli.DRAMATIQ_WORKER_TIMEOUT_MS); import dramatiq.worker as w; print(w.WORKER_TIMEOUT)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == str(WORKER_THREAD_POLL_MS)
