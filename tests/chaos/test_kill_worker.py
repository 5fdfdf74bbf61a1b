"""``kill -9`` of the worker in the middle of a build, a bump and a sync: after a restart, and
with no further traffic, the job is redelivered within ``REDELIVERY_BOUND_SECONDS`` and the
release lands once: one tag in the registry, one commit per event, each object applied once per
revision (apiserver audit log). The killed build leaves no process and no held storage lock."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from handlers.build import orphans
from service.broker import REDELIVERY_BOUND_SECONDS
from tests.chaos.scenario import Run, scenario
from tests.chaos.world import World, wait_for

EFFECT_SECONDS = 150
"""Build (or retag) + bump + sync of the demo-sized app after the redelivery, on 2 busy cores."""
SLOW_BUILD_SECONDS = 40
"""The killed build's ``RUN sleep``: outlives the redelivery (~20 s), so only the reaper can end it."""
PUSH_SOURCE = {"sent": "1 real git push to the app repo (its post-receive hook posted the webhook)",
               "accepted": "the receiver's record of that push (matched by commit sha); the hook got the answer"}


def kill(world: World, run: Run, queue: str, between: Callable[[], None] = lambda: None) -> float:
    """``kill -9`` the worker holding a ``queue`` message, restart it (the fault's end), and return
    the seconds until the dead worker's message was requeued (its ack set in Redis swept), with no
    other traffic."""
    held = world.unacked(queue)
    assert held, f"no {queue} message in flight"
    world.daemon("worker").kill()
    killed = time.monotonic()
    between()
    world.start_worker()
    run.fault_over()
    wait_for(lambda: not world.r.exists(*held), timeout=REDELIVERY_BOUND_SECONDS,
             what=f"the {queue} message requeued", log=world.daemon("worker").log_file)
    return time.monotonic() - killed


def push(world: World, run: Run, **options: int) -> str:
    sha = world.push_app(**options)
    run.ledger.pushed(sha)
    return sha


def conclude(run: Run, world: World, note: str) -> None:
    row = run.conclude(timeout=EFFECT_SECONDS + REDELIVERY_BOUND_SECONDS, landed=world.release_landed,
                       note=note, sources=PUSH_SOURCE)
    assert run.batch is not None
    assert (row.accepted, row.lost, row.duplicated) == (1, 0, 0), row
    assert all(len(f) == 1 for f in run.batch.follow_ups.values()), run.batch.follow_ups  # one image event


def sleeping(world: World, seconds: int) -> bool:
    """A ``sleep <seconds>`` runs inside one of this world's buildah sessions (the build's RUN)."""
    for session in world.buildah_sessions():
        for pid in orphans.session_members(session):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if argv[:2] == [b"sleep", str(seconds).encode()]:
                return True
    return False


def test_kill_during_build_leaves_no_build_behind_and_lands_once(world: World) -> None:
    with scenario(world, "kill -9 worker during build") as run:
        push(world, run, slow=SLOW_BUILD_SECONDS)
        wait_for(lambda: sleeping(world, SLOW_BUILD_SECONDS), timeout=90, what="the build inside RUN sleep",
                 log=world.daemon("worker").log_file)
        old = world.buildah_sessions()
        redelivery = kill(world, run, "build")
        wait_for(lambda: world.buildah_sessions() - old, timeout=60, what="the redelivered build running",
                 log=world.daemon("worker").log_file)
        during = {s: orphans.session_members(s) for s in old}
        conclude(run, world, f"redelivered {redelivery:.0f}s after kill; old build sessions {sorted(old)}")
    after = {s: orphans.session_members(s) for s in old}
    assert not any(during.values()), f"the killed build still ran when its redelivery started: {during}"
    assert not any(after.values()), after
    assert not world.busy_storage_locks()


def _push_held_then(world: World, scenario_name: str, *, land: bool) -> None:
    """Kill the worker while its bump is inside ``git push`` (the remote's pre-receive hook holds
    it: after the commit, before the push is done); the push then lands or is refused."""
    with scenario(world, scenario_name) as run:
        world.hold.touch()
        try:
            push(world, run)
            wait_for(world.waiting.exists, timeout=90, what="the bump inside git push",
                     log=world.daemon("worker").log_file)

            def release() -> None:
                if not land:
                    world.reject.touch()
                world.hold.unlink()
                time.sleep(1.5)  # the remote finishes (or refuses) the orphaned push
                world.reject.unlink(missing_ok=True)

            redelivery = kill(world, run, "bump", release)
        finally:
            world.hold.unlink(missing_ok=True)
            world.waiting.unlink(missing_ok=True)
        conclude(run, world, f"redelivered {redelivery:.0f}s after kill")


def test_kill_during_bump_push_refused_commits_once(world: World) -> None:
    _push_held_then(world, "kill -9 worker in bump: commit made, push lost", land=False)


def test_kill_during_bump_push_landed_commits_once_and_syncs(world: World) -> None:
    _push_held_then(world, "kill -9 worker in bump: push landed, not acked", land=True)


def test_kill_during_sync_redelivers_one_sync(world: World) -> None:
    """The kube-apiserver is frozen (SIGSTOP) so the sync hangs inside a request when killed."""
    apiserver = world.cluster._daemon("kube-apiserver").pid()
    assert apiserver is not None
    with scenario(world, "kill -9 worker during sync") as run:
        sha = push(world, run)
        wait_for(lambda: world.record_for_sha(sha, run.baseline.started), timeout=30, what="the push recorded")
        os.kill(apiserver, signal.SIGSTOP)
        try:
            wait_for(lambda: world.r.exists("shipline:lock:sync:stg"), timeout=90, what="the sync running",
                     log=world.daemon("worker").log_file)
            time.sleep(1)
            redelivery = kill(world, run, "sync", lambda: os.kill(apiserver, signal.SIGCONT))
        finally:
            os.kill(apiserver, signal.SIGCONT)
        conclude(run, world, f"redelivered {redelivery:.0f}s after kill")

