"""``kill -9`` of the worker in the middle of a build, a bump and a sync: after a restart, and
with no further traffic, the job is redelivered and completes with one image, one commit and one
sync, within ``REDELIVERY_BOUND_SECONDS``."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

from service.broker import REDELIVERY_BOUND_SECONDS
from tests.chaos.results import record
from tests.chaos.world import World, wait_for

EFFECT_SECONDS = 90
"""Build (or retag) + bump + sync of the demo-sized app after the redelivery, on 2 busy cores."""


def push_event(world: World, sha: str) -> str:
    wait_for(lambda: world.event_for_sha(sha), timeout=30, what=f"push {sha[:7]} recorded")
    record = world.event_for_sha(sha)
    assert record is not None
    return record.id


def children(world: World, event_id: str) -> list[str]:
    return [r.id for r in world.records() if r.correlation_id == event_id and r.id != event_id]


def outcome(world: World, event_id: str, revisions_before: set[str]) -> dict[str, int]:
    """The effects one push had: images pushed, bump commits, syncs, builds that finished."""
    return {
        "images": len(world.manifest_revisions() - revisions_before),
        "commits": sum(world.commits_for(c) for c in children(world, event_id)),
        "syncs": sum(world.syncs(event_id)),  # environments synced + extra syncs: 1 when exactly once
        "builds": len([s for s in world.steps(event_id, "build") if s["status"] != "running"]),
    }


def settle(world: World, event_id: str) -> None:
    wait_for(lambda: world.steps(event_id, "sync"), timeout=EFFECT_SECONDS + REDELIVERY_BOUND_SECONDS,
             what="the push synced", log=world.daemon("worker").log_file)
    time.sleep(3)  # a duplicate would show up now: give it the chance


def report(world: World, scenario: str, event_id: str, before: set[str], redelivery: float) -> dict[str, int]:
    got = outcome(world, event_id, before)
    done = all(v >= 1 for v in got.values())
    record(scenario, sent=1, accepted=1, processed=int(done), lost=int(not done),
           duplicated=sum(max(0, v - 1) for v in got.values()),
           note=f"redelivered {redelivery:.0f}s after kill; " + ", ".join(f"{k} {v}" for k, v in got.items()))
    return got


def kill(world: World, queue: str, between: Callable[[], None] = lambda: None) -> float:
    """``kill -9`` the worker holding a ``queue`` message, restart it, and return the seconds until
    the dead worker's message was requeued (its ack set swept), with no other traffic."""
    held = world.unacked(queue)
    assert held, f"no {queue} message in flight"
    world.daemon("worker").kill()
    killed = time.monotonic()
    between()
    world.start_worker()
    wait_for(lambda: not world.r.exists(*held), timeout=REDELIVERY_BOUND_SECONDS,
             what=f"the {queue} message requeued", log=world.daemon("worker").log_file)
    return time.monotonic() - killed


def test_kill_during_build_redelivers_one_image_one_commit_one_sync(world: World) -> None:
    before = world.manifest_revisions()
    sha = world.push_app(slow=6)
    event_id = push_event(world, sha)
    wait_for(lambda: world.steps(event_id, "build", "running"), timeout=60, what="build running")
    time.sleep(2)  # inside `RUN sleep 6`
    redelivery = kill(world, "build")
    settle(world, event_id)
    got = report(world, "kill -9 worker during build", event_id, before, redelivery)
    assert got == {"images": 1, "commits": 1, "syncs": 1, "builds": 1}, got


def _push_held_then(world: World, scenario: str, *, land: bool) -> None:
    """Kill the worker while its bump is inside ``git push`` (the remote's pre-receive hook holds
    it: after the commit, before the push is done); the push then lands or is refused."""
    before = world.manifest_revisions()
    world.hold.touch()
    try:
        sha = world.push_app()
        event_id = push_event(world, sha)
        wait_for(world.waiting.exists, timeout=90, what="the bump inside git push",
                 log=world.daemon("worker").log_file)

        def release() -> None:
            if not land:
                world.reject.touch()
            world.hold.unlink()
            time.sleep(1.5)  # the remote finishes (or refuses) the orphaned push
            world.reject.unlink(missing_ok=True)

        redelivery = kill(world, "bump", release)
    finally:
        world.hold.unlink(missing_ok=True)
        world.waiting.unlink(missing_ok=True)
    settle(world, event_id)
    got = report(world, scenario, event_id, before, redelivery)
    assert got == {"images": 1, "commits": 1, "syncs": 1, "builds": 1}, got


def test_kill_during_bump_push_refused_commits_once(world: World) -> None:
    _push_held_then(world, "kill -9 worker in bump: commit made, push lost", land=False)


def test_kill_during_bump_push_landed_commits_once_and_syncs(world: World) -> None:
    _push_held_then(world, "kill -9 worker in bump: push landed, not acked", land=True)


def test_kill_during_sync_redelivers_one_sync(world: World) -> None:
    """The kube-apiserver is frozen (SIGSTOP) so the sync hangs inside a request when killed."""
    before = world.manifest_revisions()
    apiserver = world.cluster._daemon("kube-apiserver").pid()
    assert apiserver is not None
    sha = world.push_app()
    event_id = push_event(world, sha)
    os.kill(apiserver, signal.SIGSTOP)
    try:
        wait_for(lambda: world.r.exists("shipline:lock:sync:stg"), timeout=90, what="the sync running",
                 log=world.daemon("worker").log_file)
        time.sleep(1)
        redelivery = kill(world, "sync", lambda: os.kill(apiserver, signal.SIGCONT))
    finally:
        os.kill(apiserver, signal.SIGCONT)
    settle(world, event_id)
    got = report(world, "kill -9 worker during sync", event_id, before, redelivery)
    assert got == {"images": 1, "commits": 1, "syncs": 1, "builds": 1}, got
