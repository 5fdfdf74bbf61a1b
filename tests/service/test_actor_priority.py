"""Routing first (``service.broker.ACTOR_PRIORITY``): of the messages a worker has fetched, a free
thread starts every ``process_event`` before any build, bump or sync job, whatever the order they
were queued in. On the service's real broker and a real dramatiq worker."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import dramatiq
import redis
from dramatiq import Worker

from devstack.stack import Stack
from service.broker import (
    ACTOR_PRIORITY,
    NAMESPACE,
    QUEUE_BUILD,
    QUEUE_BUMP,
    QUEUE_EVENTS,
    QUEUE_SYNC,
    QUEUES,
    make_broker,
)

THREADS = 2
"""dramatiq fetches up to twice this per queue: room for every message below."""


def test_a_free_thread_routes_before_it_builds_bumps_or_syncs(stack: Stack, redis_client: redis.Redis) -> None:
    broker = make_broker(stack.redis.url)
    started: list[str] = []
    release, blocked = threading.Event(), threading.Semaphore(0)

    def declare(name: str, queue: str) -> Callable[..., None]:
        @dramatiq.actor(broker=broker, queue_name=queue, actor_name=name, max_retries=0,
                        priority=ACTOR_PRIORITY[name])
        def act(label: str) -> None:
            if label == "blocker":  # holds a thread until everything else has been fetched
                blocked.release()
                release.wait(30)
                return
            started.append(f"{name}:{label}")

        return act.send

    route, build = declare("process_event", QUEUE_EVENTS), declare("build_repo", QUEUE_BUILD)
    bump, sync = declare("bump_env", QUEUE_BUMP), declare("sync_env", QUEUE_SYNC)
    worker = Worker(broker, worker_threads=THREADS, worker_timeout=100)
    worker.start()
    try:
        for _ in range(THREADS):
            build("blocker")
        for _ in range(THREADS):
            assert blocked.acquire(timeout=10), "the worker never started the blockers"
        for send, label in [(sync, "1"), (bump, "1"), (route, "1"), (build, "1"), (sync, "2"), (route, "2"),
                            (bump, "2"), (route, "3")]:
            send(label)
        queues = [f"{NAMESPACE}:{q}" for q in QUEUES]
        deadline = time.monotonic() + 10
        while any(redis_client.llen(q) for q in queues) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(redis_client.llen(q) for q in queues), "the worker did not fetch everything"
        release.set()
        deadline = time.monotonic() + 10
        while len(started) < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        release.set()
        worker.stop(timeout=5000)
        broker.close()

    assert sorted(started[:3]) == ["process_event:1", "process_event:2", "process_event:3"], started
    assert len(started) == 8, started
