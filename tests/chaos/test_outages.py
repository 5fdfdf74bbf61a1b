"""Outages of what Shipline depends on: the git remote refuses pushes, the registry is down, the
kube-apiserver is down, and poison messages. Transient trouble is retried with backoff until it
passes; what never passes ends ``failed``, visible, in dramatiq's dead-letter set, without
holding up the other events."""

from __future__ import annotations

import time

from service.broker import NAMESPACE, QUEUE_EVENTS, make_broker, message
from tests.chaos.results import record
from tests.chaos.test_kill_worker import outcome, push_event, settle
from tests.chaos.world import World, wait_for


def sync_only_push(world: World) -> str:
    """A push to the manifests repo (routes to a sync only); returns its event id."""
    answer = world.deliver("/hooks/gitea", world.gitea_push(world.deploy_name, world.deploy_head()))
    return answer.get("event_id") or answer["duplicate"]


def test_git_remote_refusing_pushes_is_retried_then_commits_once(world: World) -> None:
    before = world.manifest_revisions()
    world.rejections.unlink(missing_ok=True)
    world.reject.touch()
    try:
        event_id = push_event(world, world.push_app())
        wait_for(lambda: world.rejections.exists() and len(world.rejections.read_text().split()) >= 3,
                 timeout=90, what="pushes refused", log=world.daemon("worker").log_file)
    finally:
        world.reject.unlink(missing_ok=True)
    settle(world, event_id)
    got = outcome(world, event_id, before)
    refused = len(world.rejections.read_text().split())
    record("git remote refuses pushes, then accepts", sent=1, accepted=1, processed=int(got["syncs"] == 1),
           lost=int(got["syncs"] == 0), duplicated=max(0, got["commits"] - 1) + max(0, got["syncs"] - 1),
           note=f"{refused} pushes refused, then 1 commit")
    assert got == {"images": 1, "commits": 1, "syncs": 1, "builds": 1}, got


def test_registry_down_fails_the_build_visibly_into_the_dead_letter_set(world: World) -> None:
    world.stack.registry.stop()
    try:
        event_id = push_event(world, world.push_app())
        wait_for(lambda: world.store.get(event_id).status == "failed", timeout=120,
                 what="the build given up", log=world.daemon("worker").log_file)
    finally:
        world.stack.registry.start()
    failed = world.store.get(event_id)
    assert failed is not None and "unreachable" in failed.outcome, failed.outcome
    dead = [m for m in world.dead_letters("build") if m["args"][0] == event_id]
    attempts = dead[0]["options"].get("retries", 0) + 1 if dead else 0
    api = world.api().get(f"/api/events/{event_id}").json()
    record("registry down during build", sent=1, accepted=1, processed=int(bool(dead)), lost=int(not dead),
           duplicated=0, note=f"failed after {attempts} attempts, in {NAMESPACE}:build.XQ")
    assert len(dead) == 1 and attempts == 7, dead  # 1 + queue.max_retries
    assert api["status"] == "failed" and any(s["status"] == "failed" for s in api["steps"]), api


def test_kube_apiserver_down_during_sync_is_retried(world: World) -> None:
    cluster = world.cluster
    cluster._daemon("kube-apiserver").stop()
    try:
        event_id = sync_only_push(world)
        wait_for(lambda: "will retry" in world.daemon("worker").log_file.read_text()[-20000:], timeout=60,
                 what="a sync attempt failing", log=world.daemon("worker").log_file)
    finally:
        cluster._launch("kube-apiserver", cluster._apiserver_argv(), cluster._api_ready)
    wait_for(lambda: world.syncs(event_id)[0] == 2, timeout=90, what="the syncs after the outage",
             log=world.daemon("worker").log_file)
    time.sleep(2)
    envs, extra = world.syncs(event_id)
    health = sorted({s["status"] for s in world.steps(event_id, "sync")})
    record("kube-apiserver down during sync", sent=1, accepted=1, processed=int(envs == 2),
           lost=2 - envs, duplicated=extra, note=f"both environments of the branch synced: {health}")
    assert (envs, extra) == (2, 0), world.steps(event_id, "sync")


def test_poison_messages_go_to_the_dead_letter_set_without_blocking_others(world: World) -> None:
    broker = make_broker(world.redis.url)
    try:
        broker.enqueue(message(QUEUE_EVENTS, "process_event", "0" * 24))  # not in the store: permanent
    finally:
        broker.close()
    broken = world.deliver("/hooks/gitea", world.gitea_push("broken", "b" * 40))["event_id"]  # never fetchable
    time.sleep(1)
    healthy = [sync_only_push(world) for _ in range(1)]
    flowing = wait_for(lambda: all(world.steps(e, "sync") for e in healthy), timeout=60,
                       what="other events flowing meanwhile")
    wait_for(lambda: world.store.get(broken).status == "failed", timeout=120, what="the broken repo given up",
             log=world.daemon("worker").log_file)
    dead_events = [m["args"][0] for m in world.dead_letters("events")]
    dead_builds = [m["args"][0] for m in world.dead_letters("build")]
    ok = "0" * 24 in dead_events and broken in dead_builds
    record("poison messages (permanent + always transient)", sent=3, accepted=3, processed=2 * ok + 1,
           lost=0 if ok else 2, duplicated=0, note=f"both dead-lettered; others synced in {flowing:.0f}s")
    assert ok, (dead_events, dead_builds)
    assert world.store.get(broken).status == "failed"
