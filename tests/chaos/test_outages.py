"""Outages of what Shipline depends on: the git remote refuses pushes, the registry is down, the
kube-apiserver is down, and poison messages. Transient trouble is retried with backoff until it
passes; what never passes ends ``failed``, visible, in dramatiq's dead-letter set, without
holding up the other events."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

from service.broker import NAMESPACE, QUEUE_EVENTS, make_broker, message
from tests.chaos import evidence
from tests.chaos.scenario import Run, scenario
from tests.chaos.senders import delivery_id, fake_sha, post
from tests.chaos.test_kill_worker import EFFECT_SECONDS, PUSH_SOURCE, conclude, push
from tests.chaos.world import BUILD_RETRIES, World, wait_for

DRIFT_PORT = 9090
MANIFESTS_SOURCE = {"sent": "1 signed Gitea push delivery of a real commit to the manifests repo",
                    "processed": "the event's record final in Redis and both environments' inventory ConfigMaps "
                                 "at the commit (read from the apiserver)"}


def synced_to(world: World, sha: str) -> Callable[[evidence.Accepted], bool]:
    """Both environments of the manifests branch synced to ``sha``: their inventory ConfigMaps,
    read from the apiserver, record that revision."""
    return lambda _: all(world.live_revision(env) == sha for env in ("stg", "fleet"))


def deliver(world: World, run: Run, sha: str) -> str:
    """The Gitea push delivery of a real manifests commit (the deploy repo has no webhook); its id."""
    delivery = world.gitea_push(world.deploy_name, sha)
    run.ledger.sent(delivery_id(delivery))
    status, answer = post(world.url, delivery, ledger=run.ledger)
    assert status == 202, answer
    return str(answer["event_id"])


def test_git_remote_refusing_pushes_is_retried_then_commits_once(world: World) -> None:
    world.rejections.unlink(missing_ok=True)
    with scenario(world, "git remote refuses pushes, then accepts") as run:
        world.reject.touch()
        try:
            push(world, run)
            wait_for(lambda: world.rejections.exists() and len(world.rejections.read_text().split()) >= 3,
                     timeout=90, what="pushes refused", log=world.daemon("worker").log_file)
        finally:
            world.reject.unlink(missing_ok=True)
        run.fault_over()
        conclude(run, world, f"{len(world.rejections.read_text().split())} pushes refused, then 1 commit")


def test_registry_down_fails_the_build_visibly_into_the_dead_letter_set(world: World) -> None:
    with scenario(world, "registry down during build") as run:
        world.stack.registry.stop()
        try:
            sha = push(world, run)
            wait_for(lambda: getattr(world.record_for_sha(sha, run.baseline.started), "status", "") == "failed",
                     timeout=180, what="the build given up", log=world.daemon("worker").log_file)
        finally:
            world.stack.registry.start()
            run.fault_over()
        record = world.record_for_sha(sha, run.baseline.started)
        assert record is not None
        dead = [m for m in world.dead_letters("build") if m["args"][0] == record.id]
        attempts = dead[0]["options"].get("retries", 0) + 1 if dead else 0
        row = run.conclude(timeout=30, sources=PUSH_SOURCE,
                           note=f"failed after {attempts} attempts, in {NAMESPACE}:build.XQ")
    failed = world.store.get(record.id)
    assert failed is not None and failed.status == "failed" and "unreachable" in failed.outcome, failed
    assert len(dead) == 1 and attempts == 1 + BUILD_RETRIES, dead
    assert (row.accepted, row.lost, row.duplicated) == (1, 0, 0), row


def test_kube_apiserver_down_during_sync_is_retried(world: World) -> None:
    cluster = world.cluster
    with scenario(world, "kube-apiserver down during sync") as run:
        sha = world.change_manifests()
        cluster._daemon("kube-apiserver").stop()
        try:
            deliver(world, run, sha)
            wait_for(lambda: "will retry" in world.daemon("worker").log_file.read_text()[-20000:], timeout=60,
                     what="a sync attempt failing", log=world.daemon("worker").log_file)
        finally:
            restart = _restart_apiserver(world)
            run.fault_over()
        row = run.conclude(timeout=EFFECT_SECONDS, landed=synced_to(world, sha), sources=MANIFESTS_SOURCE,
                           note=f"a manifests commit; both environments synced to it after the outage (apiserver "
                                f"ready {restart:.0f}s after its restart began)")
    assert (row.accepted, row.lost, row.duplicated) == (1, 0, 0), row
    assert _marker_applies(world, run.baseline.audit_offset) == {"stg", "fleet"}


def _restart_apiserver(world: World) -> float:
    """Start the apiserver again (same flags, same audit log); seconds until it was ready."""
    began = time.monotonic()
    world.cluster.restart_apiserver()
    return time.monotonic() - began


def _marker_applies(world: World, since: int) -> set[str]:
    """Environments whose ``chaos-marker`` ConfigMap Shipline applied after ``since`` (audit log)."""
    return {"fleet" if ns.endswith("-fleet") else "stg" for (resource, ns, name) in
            (a.key for a in evidence.applies(world.audit_log) if a.offset > since)
            if resource == "configmaps" and name == "chaos-marker"}


def _service_target_port(world: World) -> int:
    found = world.kube_get(f"/api/v1/namespaces/{world.namespace}/services/web") or {}
    return int(found["spec"]["ports"][0]["targetPort"])


def test_kube_apiserver_killed_during_a_sync_and_a_drift_edit_converges(world: World) -> None:
    """The apiserver is frozen right after a drift edit (the watch may not have seen it), a sync
    of a new manifests commit starts and hangs in its first request, then the apiserver is
    killed (``kill -9``) and restarted. Shipline's watches relist, the sync is retried: both
    environments reach the commit, the edit is reverted, and no object is applied twice."""
    cluster = world.cluster
    service = f"/api/v1/namespaces/{world.namespace}/services/web"
    with scenario(world, "kube-apiserver kill -9 + restart during a sync and a drift edit") as run:
        sha = world.change_manifests()
        apiserver = cluster._daemon("kube-apiserver").pid()
        assert apiserver is not None
        world.kube_patch(service, {"spec": {"ports": [{"port": 80, "targetPort": DRIFT_PORT}]}}, "chaos-drift")
        os.kill(apiserver, signal.SIGSTOP)
        try:
            deliver(world, run, sha)
            wait_for(lambda: world.r.exists("shipline:lock:sync:stg", "shipline:lock:sync:fleet"), timeout=60,
                     what="a sync running", log=world.daemon("worker").log_file)
            time.sleep(1)
        finally:
            cluster._daemon("kube-apiserver").kill()
        time.sleep(1)
        restart = _restart_apiserver(world)
        run.fault_over()
        landed = synced_to(world, sha)
        row = run.conclude(timeout=EFFECT_SECONDS, sources=MANIFESTS_SOURCE,
                           landed=lambda b: landed(b) and _service_target_port(world) == 8080,
                           note=f"drift edit (targetPort {DRIFT_PORT}) reverted; both environments at the commit; "
                                f"apiserver ready {restart:.0f}s after its restart began")
        after_edit = [a for a in evidence.applies(world.audit_log)
                      if a.offset > run.baseline.audit_offset and a.key == ("services", world.namespace, "web")]
    assert (row.accepted, row.lost, row.duplicated) == (1, 0, 0), row
    assert _marker_applies(world, run.baseline.audit_offset) == {"stg", "fleet"}
    assert len(after_edit) == 1, after_edit  # the drift corrected once


def test_poison_messages_go_to_the_dead_letter_set_without_blocking_others(world: World) -> None:
    with scenario(world, "poison messages (permanent + always transient)") as run:
        broker = make_broker(world.redis.url)
        try:
            broker.enqueue(message(QUEUE_EVENTS, "process_event", "0" * 24))  # not in the store: permanent
        finally:
            broker.close()
        broken = world.gitea_push("broken", "b" * 40)  # its repo is never fetchable
        run.ledger.sent(broken[2]["X-Gitea-Delivery"])
        broken_id = post(world.url, broken, ledger=run.ledger)[1]["event_id"]
        time.sleep(1)
        healthy = world.gitea_push(world.deploy_name, fake_sha())
        run.ledger.sent(healthy[2]["X-Gitea-Delivery"])
        healthy_id = post(world.url, healthy, ledger=run.ledger)[1]["event_id"]
        flowing = wait_for(lambda: evidence.statuses(world.r, {healthy_id})[healthy_id] == "done", timeout=60,
                           what="other events flowing meanwhile")
        row = run.conclude(timeout=180, note=f"the healthy push done in {flowing:.0f}s meanwhile")
    dead_events = [m["args"][0] for m in world.dead_letters("events")]
    dead_builds = [m["args"][0] for m in world.dead_letters("build")]
    assert "0" * 24 in dead_events and broken_id in dead_builds, (dead_events, dead_builds)
    assert evidence.statuses(world.r, {broken_id}) == {broken_id: "failed"}
    assert (row.accepted, row.lost, row.duplicated) == (2, 0, 0), row
