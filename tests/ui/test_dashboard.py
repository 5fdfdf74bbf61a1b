"""The operator surfaces on the real stack, driven like an operator would: the dashboard in a real
browser (Debian's chromium through Playwright), then what the same release left behind in
notifications, commit statuses (on the stack's Gitea, where the release tag was pushed), metrics
and logs.

One release for the module: a new X.Y.Z tag pushed while the dashboard is open (a tag, so it moves
both environments whatever ran before: after a release, main-branch builds describe as
prereleases of it and staging's no-downgrade policy would rightly refuse them).
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, sync_playwright
from prometheus_client.parser import text_string_to_metric_families

from devstack.process import free_port, wait_until
from tests.fixtures_e2e import STANDIN_TOKEN, Standins, running_stack
from tests.fixtures_stack import ServerThread

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
GIT = ["git", "-c", "user.name=Dev", "-c", "user.email=dev@example.com"]
RELEASE_SECONDS = 240


def git(work: Path, *args: str) -> str:
    return subprocess.run([*GIT, "-C", str(work), *args], check=True, capture_output=True, text=True).stdout


def next_release(work: Path) -> str:
    versions = [tuple(int(p) for p in t.split(".")) for t in git(work, "tag", "--list").split()
                if re.fullmatch(r"\d+\.\d+\.\d+", t)]
    major, minor, patch = max(versions, default=(0, 0, 0))
    return f"{major}.{minor}.{patch + 1}"


@pytest.fixture(scope="module")
def standins() -> Iterator[tuple[Standins, str]]:
    s = Standins()
    with ServerThread(s.app, free_port()) as server:
        yield s, server.url


@pytest.fixture(scope="module")
def surfaces(stack, kube_cluster, standins, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    calls, base = standins
    secrets = tmp_path_factory.mktemp("notify-secrets")
    metrics_port = free_port()

    def secret(name: str, value: str) -> dict[str, str]:
        (secrets / name).write_text(value)
        return {"file": str(secrets / name)}

    def amend(data: dict[str, Any]) -> None:
        data["server"].update(worker_metrics_port=metrics_port, public_url=stack.receiver_url)
        assert data["repos"][0]["status"]["provider"] == "gitea"  # the demo's own: statuses go to Gitea
        for env in data["environments"]:
            env["notify"] = [
                {"kind": "webhook", "url": secret(f"hook-{env['name']}", f"{base}/hooks/webhook-{env['name']}")},
                {"kind": "slack", "url": secret(f"slack-{env['name']}", f"{base}/hooks/slack-{env['name']}"),
                 "on": ["success", "failure"]},
            ]

    with running_stack(stack, kube_cluster, tmp_path_factory.mktemp("ui"), amend) as parts:
        yield {**parts, "calls": calls, "worker_metrics": f"http://127.0.0.1:{metrics_port}/metrics"}


@pytest.fixture(scope="module")
def page(surfaces) -> Iterator[Page]:
    with sync_playwright() as pw, tempfile.TemporaryDirectory(prefix="shipline-chromium-") as profile:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900})
        tab = context.new_page()
        tab.goto(surfaces["stack"].receiver_url + "/")
        tab.fill("#token", surfaces["token"])
        tab.click("#login button")
        tab.wait_for_selector(".card[data-env]", timeout=15_000)
        yield tab
        context.close()


@pytest.fixture(scope="module")
def release(surfaces, page: Page) -> dict[str, Any]:
    """Push a release tag with the dashboard open; wait until its card shows both syncs Healthy."""
    work = surfaces["work"]
    page.evaluate("window.__loadedOnce = true")
    version = next_release(work)
    (work / "frontend" / "index.html").write_text(f"<h1>frontend {version}</h1>\n")
    git(work, "commit", "-qam", f"frontend: {version}")
    git(work, "tag", version)
    git(work, "push", "-q", "origin", version)
    sha = git(work, "rev-parse", "HEAD").strip()
    card = page.locator(".release", has=page.locator(".what", has_text=f"refs/tags/{version}"))
    card.wait_for(timeout=30_000)
    for env in ("staging", "production"):
        card.locator(f'.step[data-stage="sync"].Healthy:has(.env:text-is("{env}"))').wait_for(
            timeout=RELEASE_SECONDS * 1000)
    return {"version": version, "sha": sha, "event_id": card.get_attribute("data-event"), "card": card}


def test_login_shows_both_environments_with_their_health(page: Page) -> None:
    envs = page.locator(".card[data-env]")
    assert sorted(envs.evaluate_all("cards => cards.map(c => c.dataset.env)")) == ["production", "staging"]
    for health in envs.locator(".health").all_inner_texts():
        assert health in {"Healthy", "Progressing", "Degraded", "Unknown", "SyncFailed"}
    assert page.locator("#live").inner_text() == "live"


def test_a_push_updates_the_timeline_live_delivery_build_bump_sync_under_one_correlation(page: Page,
                                                                                       release, surfaces) -> None:
    assert page.evaluate("window.__loadedOnce") is True  # the page was never reloaded
    card = release["card"]
    assert card.get_attribute("data-correlation") == release["event_id"]
    stages = card.locator(".steps .step").evaluate_all("steps => steps.map(s => s.dataset.stage)")
    order = [stages.index(s) for s in ("delivery", "route", "build", "bump", "sync")]
    assert order == sorted(order), stages
    related = card.locator(".related").inner_text()
    assert f"shop/frontend:{release['version']}" in related  # the image event (registry's or ours), linked
    children = [e for e in surfaces["http"].get("/api/events", params={"limit": 50}).json()["events"]
                if e["id"] != release["event_id"] and e["correlation_id"] == release["event_id"]]
    images = [c for c in children if c["kind"] == "image_pushed"]  # also: the forge's push of our own commit
    assert images and all(c["event"].get("tag") == release["version"] for c in images)
    assert all(c["kind"] in ("image_pushed", "git_pushed") for c in children), children
    staging = page.locator('.card[data-env="staging"]')
    assert staging.locator(".health").inner_text() == "Healthy"
    assert release["version"] in staging.locator(".images").inner_text()


def test_build_logs_open_from_the_build_step(page: Page, release) -> None:
    card = release["card"]
    card.locator("button.logs-toggle").click()
    logs = card.locator(".logs pre.log")
    logs.first.wait_for(timeout=10_000)
    names = card.locator(".logs h3").all_inner_texts()
    assert any(n.endswith("shop/frontend") for n in names), names
    assert "frontend built" in " ".join(logs.all_inner_texts())
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)


def test_each_sync_of_the_release_notifies_once_by_webhook_and_slack(release, surfaces) -> None:
    """The release reaches each environment in one or more syncs (its images may be bumped in separate
    commits); each sync carrying its events is one webhook and one Slack message, never repeated,
    and every event id in them belongs to the release's correlation."""
    calls: Standins = surfaces["calls"]
    http = surfaces["http"]

    def ours(body: dict[str, Any]) -> bool:
        return any(http.get(f"/api/events/{i}").json().get("correlation_id") == release["event_id"]
                   for i in body["event_ids"])

    for env in ("staging", "production"):
        hooks = [c["body"] for c in calls.of(f"webhook-{env}") if c["body"]["event_ids"] and ours(c["body"])]
        assert hooks, f"no release notification for {env}"
        assert len({tuple(h["event_ids"]) for h in hooks}) == len(hooks), hooks  # none sent twice
        for hook in hooks:
            assert (hook["environment"], hook["outcome"], hook["health"]) == (env, "success", "Healthy")
            assert hook["correlation_id"] in hook["correlation_ids"] and len(hook["revision"]) == 40
        assert any(i.endswith(f"/shop/frontend:{release['version']}") for i in hooks[-1]["images"]), hooks[-1]
        slack = [c["body"] for c in calls.of(f"slack-{env}") if any(h["correlation_id"] in json.dumps(c["body"])
                                                                    for h in hooks)]
        assert len(slack) == len(hooks)
        assert all(m["text"].startswith(f":white_check_mark: {env}: Healthy") for m in slack)


def test_the_build_posts_pending_then_success_on_the_commit_in_gitea(release, surfaces) -> None:
    gitea, repo = surfaces["stack"].gitea, surfaces["repos"]["app"]
    statuses = sorted(gitea.api("GET", f"/repos/{repo.full_name}/statuses/{release['sha']}"), key=lambda s: s["id"])
    assert [s["status"] for s in statuses][:2] == ["pending", "success"], statuses
    assert {s["context"] for s in statuses} == {"shipline/build"}
    assert statuses[1]["target_url"] == f"{surfaces['stack'].receiver_url}/#event={release['event_id']}"
    assert release["version"] in statuses[0]["description"]  # "building <tag>"


def test_metrics_count_the_release_on_receiver_and_worker(release, surfaces) -> None:
    receiver = samples(surfaces["http"].get("/metrics").text)
    assert receiver[("shipline_deliveries_total", (("outcome", "accepted"), ("source", "gitea")))] >= 1
    for queue in ("events", "build", "bump", "sync"):
        assert receiver[("shipline_queue_depth", (("queue", queue),))] >= 0
    worker = samples(httpx.get(surfaces["worker_metrics"]).text)
    for stage, outcome in (("build", "done"), ("bump", "done"), ("sync", "Healthy")):
        assert worker[("shipline_stage_duration_seconds_count", (("outcome", outcome), ("stage", stage)))] >= 1
    for env in ("staging", "production"):
        count = worker[("shipline_lead_time_seconds_count", (("environment", env),))]
        total = worker[("shipline_lead_time_seconds_sum", (("environment", env),))]
        assert count >= 1 and 1 < total / count < RELEASE_SECONDS, (env, count, total)

    def cache_gauges() -> dict[str, dict[str, float]]:
        text = samples(httpx.get(surfaces["worker_metrics"]).text)
        return {name: {dict(labels)["cluster"]: v for (n, labels), v in text.items() if n == name}
                for name in ("shipline_cache_objects", "shipline_cache_bytes")}

    # the worker's tick sets them every 5 s, so the first values may predate the release's syncs
    wait_until(lambda: sum(cache_gauges()["shipline_cache_objects"].values()) >= 4, timeout=15,
               what="the live-state cache gauges counting both environments' Deployments")
    cached = cache_gauges()
    (cluster, objects), = cached["shipline_cache_objects"].items()  # both environments are on one cluster
    assert cached["shipline_cache_bytes"][cluster] >= 300 * objects, cached


def test_worker_logs_one_json_line_per_actor_run_and_no_secret(release, surfaces) -> None:
    stack = surfaces["stack"]
    serve, worker = stack.service_daemons()
    lines = [json.loads(line) for line in worker.log_file.read_text().splitlines() if line.startswith("{")]
    runs = [x for x in lines if x.get("logger") == "shipline.actor" and x["msg"].startswith("build_repo finished")]
    mine = [x for x in runs if x.get("correlation_id") == release["event_id"]]
    assert mine and mine[0]["outcome"] == "ok" and mine[0]["duration_seconds"] > 0 and mine[0]["event_id"]
    text = serve.log_file.read_text() + worker.log_file.read_text()
    for name in ("api-token", "webhook-secret", "registry-token"):
        assert stack.secret(name) not in text
    assert stack.gitea.token not in text
    assert STANDIN_TOKEN not in text and "/hooks/webhook-" not in text


def test_replay_from_the_dashboard_replays_the_event(page: Page, release, surfaces) -> None:
    card = release["card"]
    button = card.locator("button.replay")
    with page.expect_response(lambda r: r.url.endswith(f"/api/events/{release['event_id']}/replay")) as answer:
        button.click()
    replayed = answer.value.json()
    assert answer.value.status == 202 and replayed["replay_of"] == release["event_id"]
    card.locator(".related", has_text="replay").wait_for(timeout=30_000)
    wait_until(lambda: surfaces["http"].get(f"/api/events/{replayed['event_id']}").json()["status"] == "done",
               timeout=120, what="the replayed release processed")
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}
