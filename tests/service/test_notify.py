"""Release notifications and commit statuses, against local stand-ins for GitHub, GitLab and
webhook/Slack receivers (the end-to-end check on the real stack is in tests/ui/test_dashboard.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.process import free_port
from handlers.build.report import BuildReport, ImageResult
from handlers.events import GitPushed
from service import notify
from service.config import Config, parse_config
from tests.fixtures_e2e import STANDIN_TOKEN, Standins
from tests.fixtures_stack import ServerThread

SHA = "a" * 40


@pytest.fixture(scope="module")
def standins() -> Iterator[tuple[Standins, str]]:
    s = Standins()
    with ServerThread(s.app, free_port()) as server:
        yield s, server.url


@pytest.fixture
def calls(standins: tuple[Standins, str]) -> Standins:
    standins[0].calls.clear()
    return standins[0]


def secret(tmp_path: Path, name: str, value: str) -> dict[str, str]:
    path = tmp_path / name
    path.write_text(value)
    return {"file": str(path)}


def make_config(tmp_path: Path, base: str, *, provider: str = "github", token: str = STANDIN_TOKEN,
                on: list[str] | None = None) -> Config:
    repository = "acme/shop" if provider == "github" else "acme/apps/shop"
    env = {"name": "staging", "git": {"url": "file:///deploy"},
           "images": [{"image": "reg.local/shop/frontend"}],
           "notify": [{"kind": "webhook", "url": secret(tmp_path, "hook", f"{base}/hooks/webhook"),
                       **({"on": on} if on else {})},
                      {"kind": "slack", "url": secret(tmp_path, "slack", f"{base}/hooks/slack")}]}
    return parse_config({
        "server": {"public_url": "https://shipline.example.com"},
        "repos": [{"name": "shop", "url": "file:///shop", "images": [{"name": "reg.local/shop/frontend"}],
                   "status": {"provider": provider, "api_url": f"{base}/{provider}", "repository": repository,
                              "token": secret(tmp_path, "token", token)}}],
        "environments": [env, {"name": "other", "git": {"url": "file:///deploy"},
                               "notify": [{"kind": "webhook", "url": secret(tmp_path, "o", f"{base}/hooks/other")}]}],
    })


def push() -> GitPushed:
    return GitPushed(repo="acme/shop", ref="refs/heads/main", before="0" * 40, after=SHA,
                     changed_paths=("frontend/index.html",), pusher="dev", delivery_id="d1", source="github")


def release(**overrides: Any) -> notify.Release:
    data: dict[str, Any] = {"environment": "staging", "outcome": "success", "revision": "b" * 40,
                            "images": ["reg.local/shop/frontend:1.2.3"], "health": "Healthy",
                            "correlation_ids": ["c1"], "event_ids": ["c1", "e2"]}
    return notify.Release(**{**data, **overrides})


def test_webhook_payload_carries_env_revision_images_health_reason_and_ids() -> None:
    body = notify.webhook_payload(release(reason="all good"))
    assert body["type"] == "shipline.release"
    assert {k: body[k] for k in ("environment", "outcome", "revision", "health", "reason")} == {
        "environment": "staging", "outcome": "success", "revision": "b" * 40, "health": "Healthy",
        "reason": "all good"}
    assert body["images"] == ["reg.local/shop/frontend:1.2.3"]
    assert body["correlation_id"] == "c1" and body["event_ids"] == ["c1", "e2"]
    assert body["event_count"] == 2 and body["correlation_count"] == 1


def test_slack_payload_is_text_plus_blocks_with_markup_escaped() -> None:
    body = notify.slack_payload(release(outcome="failure", health="Degraded", reason="<!channel> & <b>",
                                        url="https://shipline.example.com/#event=c1"))
    assert set(body) == {"text", "blocks"}
    assert body["text"].startswith(":x: staging: Degraded at bbbbbbbbbb")
    context = body["blocks"][-1]["elements"]
    assert any(e["text"] == "&lt;!channel&gt; &amp; &lt;b&gt;" for e in context)
    assert any(e["text"] == "<https://shipline.example.com/#event=c1|open the dashboard>" for e in context)
    assert "<!channel>" not in str(body)


def test_targets_hear_only_the_outcomes_they_asked_for(tmp_path: Path, standins, calls: Standins) -> None:
    cfg = make_config(tmp_path, standins[1], on=["failure"])
    sent = notify.send_release(cfg.environment("staging").notify, release())
    assert sent == 1
    assert [c["kind"] for c in calls.calls] == ["slack"]


def test_github_status_posts_state_context_description_and_target_url(tmp_path: Path, standins,
                                                                       calls: Standins) -> None:
    cfg = make_config(tmp_path, standins[1])
    notify.build_started(cfg, cfg.repos[0], push(), "ev1")
    (call,) = calls.of("github")
    assert call["authorized"]
    assert call["path"] == f"/github/repos/acme/shop/statuses/{SHA}"
    assert call["body"] == {"state": "pending", "context": "shipline/build", "description": "building main",
                            "target_url": "https://shipline.example.com/#event=ev1"}


def test_gitlab_status_encodes_the_project_path_and_maps_failure_to_failed(tmp_path: Path, standins,
                                                                          calls: Standins) -> None:
    cfg = make_config(tmp_path, standins[1], provider="gitlab")
    result = BuildReport("shop", "refs/heads/main", SHA,
                         (ImageResult("reg.local/shop/frontend", "failed", reason="exit 1"),))
    notify.build_finished(cfg, cfg.repos[0], push(), "ev1", result)
    (call,) = calls.of("gitlab")
    assert call["authorized"]
    assert call["raw_path"] == f"/gitlab/projects/acme%2Fapps%2Fshop/statuses/{SHA}"
    assert call["body"]["state"] == "failed" and call["body"]["name"] == "shipline/build"


def test_a_failed_build_notifies_the_environments_taking_its_images(tmp_path: Path, standins,
                                                                    calls: Standins) -> None:
    cfg = make_config(tmp_path, standins[1])
    result = BuildReport("shop", "refs/heads/main", SHA,
                         (ImageResult("reg.local/shop/frontend", "failed", reason="exit 1"),))
    notify.build_finished(cfg, cfg.repos[0], push(), "ev1", result)
    (hook,) = calls.of("webhook")
    assert hook["body"]["outcome"] == "failure" and hook["body"]["health"] == "BuildFailed"
    assert hook["body"]["correlation_id"] == "ev1"
    assert "exit 1" in hook["body"]["reason"]
    assert len(calls.of("slack")) == 1 and calls.of("other") == []  # "other" takes no image of shop


def test_a_wrong_token_is_logged_as_refused_without_the_token(tmp_path: Path, standins, calls: Standins,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    cfg = make_config(tmp_path, standins[1], token="wrong-token-value")
    with caplog.at_level(logging.INFO, logger="shipline.notify"):
        assert notify.post_status(cfg.repos[0].status, SHA, "success", "ok") is False
    assert calls.of("github")[0]["authorized"] is False
    assert "HTTP 401" in caplog.text and "wrong-token-value" not in caplog.text


def test_an_unreachable_receiver_never_raises_and_never_logs_its_url(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    dead = f"http://127.0.0.1:{free_port()}/hooks/secret-path-abc"
    cfg = make_config(tmp_path, dead.rsplit("/hooks", 1)[0])
    with caplog.at_level(logging.WARNING, logger="shipline.notify"):
        assert notify.send_release(cfg.environment("staging").notify, release()) == 0
    assert "not sent: ConnectError" in caplog.text
    assert "secret-path" not in caplog.text and "127.0.0.1" not in caplog.text


def test_a_missing_secret_is_logged_by_its_reference(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = make_config(tmp_path, "http://127.0.0.1:9")
    (tmp_path / "hook").unlink()
    with caplog.at_level(logging.WARNING, logger="shipline.notify"):
        assert notify.send_release(cfg.environment("staging").notify[:1], release()) == 0
    assert "cannot be read" in caplog.text


def test_sync_notifies_once_per_release_and_on_changes_not_every_reconcile(tmp_path: Path, standins,
                                                                           calls: Standins, redis_client) -> None:
    cfg = make_config(tmp_path, standins[1])
    env = cfg.environment("staging")
    healthy = {"health": "Healthy", "revision": "b" * 40, "images": ["reg.local/shop/frontend:1"]}
    notify.synced(cfg, redis_client, env, healthy, ["e1"], ["c1"])      # a release: told
    notify.synced(cfg, redis_client, env, healthy, [], [])              # reconcile, same outcome: quiet
    notify.synced(cfg, redis_client, env, {"health": "Progressing"}, [], [])  # neither: quiet
    notify.synced(cfg, redis_client, env, {"health": "Degraded", "reason": "drift"}, [], [])  # change: told
    notify.synced(cfg, redis_client, env, {"health": "SyncFailed"}, ["e2"], ["c2"])  # a release: told
    notify.synced(cfg, redis_client, env, {"health": "SyncFailed"}, ["e2"], ["c2"])  # its retry: quiet
    outcomes = [(c["body"]["outcome"], c["body"]["health"]) for c in calls.of("webhook")]
    assert outcomes == [("success", "Healthy"), ("failure", "Degraded"), ("failure", "SyncFailed")]
    assert len(calls.of("slack")) == 3
    assert calls.of("webhook")[0]["body"]["url"] == "https://shipline.example.com/#event=c1"


def test_a_sync_after_a_backlog_lists_the_first_ids_and_counts_them_all(tmp_path: Path, standins,
                                                                        calls: Standins, redis_client) -> None:
    cfg = make_config(tmp_path, standins[1])
    env = cfg.environment("staging")
    healthy = {"health": "Healthy", "revision": "b" * 40, "images": ["reg.local/shop/frontend:1"]}
    event_ids = [f"e{n:05d}" for n in range(20_000)]
    notify.synced(cfg, redis_client, env, healthy, event_ids, event_ids[::2])
    notify.synced(cfg, redis_client, env, healthy, list(reversed(event_ids)), event_ids[::2])  # its retry: quiet
    notify.synced(cfg, redis_client, env, healthy, [*event_ids, "e-late"], [])  # one more event: told
    first, second = (c["body"] for c in calls.of("webhook"))
    assert first["event_ids"] == event_ids[:notify.LISTED_IDS] and first["event_count"] == 20_000
    assert first["correlation_ids"] == event_ids[::2][:notify.LISTED_IDS] and first["correlation_count"] == 10_000
    assert first["correlation_id"] == "e00000" and second["event_count"] == 20_001
    assert len(redis_client.get(notify.LAST_KEY + "staging")) < 100  # the dedupe key, not the ids
