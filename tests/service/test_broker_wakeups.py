"""A hop between stages is a wake-up, not a poll: an idle consumer that has backed off for seconds
still takes a new message at once, whether dramatiq's ``enqueue`` or the receiver's hand-off
queued it; and a lost wake-up only costs the poll it replaced."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import dramatiq
import pytest
import redis
from dramatiq import Worker

from devstack.stack import Stack
from service.broker import NAMESPACE, QUEUE_EVENTS, RecoveringRedisBroker, make_broker
from service.ingest import encode_for_queue
from service.store import AsyncEventLog, EventRecord, Retention, wake_channel

IDLE_POLL_MS = 4000
"""Far above the 100 ms the service uses, so a message found by polling shows as seconds."""
BACKED_OFF_SECONDS = 2.5
"""Idle this long, the consumer sleeps 0.6-2.6 s between fetches (dramatiq's backoff from 5 ms)."""


class Idle:
    """A dramatiq worker (one thread) with a slow idle poll, and when each message reached it."""

    def __init__(self, url: str) -> None:
        self.broker: RecoveringRedisBroker = make_broker(url)
        self.seen: dict[str, float] = {}
        self.arrived = threading.Event()

        @dramatiq.actor(broker=self.broker, queue_name=QUEUE_EVENTS, actor_name="process_event", max_retries=0)
        def process_event(event_id: str) -> None:
            self.seen[event_id] = time.monotonic()
            self.arrived.set()

        self.actor = process_event
        self.worker = Worker(self.broker, worker_threads=1, worker_timeout=IDLE_POLL_MS)

    def wait(self, event_id: str) -> float:
        assert self.arrived.wait(IDLE_POLL_MS / 1000 + 5), f"{event_id} never arrived"
        self.arrived.clear()
        return self.seen[event_id]


@pytest.fixture
def idle(stack: Stack, redis_client: redis.Redis) -> Iterator[Idle]:
    worker = Idle(stack.redis.url)
    worker.worker.start()
    try:
        yield worker
    finally:
        worker.worker.stop(timeout=5000)
        worker.broker.close()


def test_a_message_enqueued_to_a_backed_off_consumer_runs_at_once(idle: Idle) -> None:
    for n in range(3):
        time.sleep(BACKED_OFF_SECONDS)
        sent = time.monotonic()
        idle.actor.send(f"ev-{n}")
        assert idle.wait(f"ev-{n}") - sent < 0.5, "found by the next poll, not woken"


def test_a_delayed_message_wakes_its_delay_queue_and_runs_when_due(idle: Idle) -> None:
    """A retry goes to the delay queue, whose idle consumer backs off as long as any other: woken,
    it takes the message at once and moves it when due, instead of on its next poll."""
    for n in range(3):
        time.sleep(BACKED_OFF_SECONDS)
        sent = time.monotonic()
        idle.actor.send_with_options(args=(f"ev-later-{n}",), delay=300)
        waited = idle.wait(f"ev-later-{n}") - sent
        assert 0.3 <= waited < 0.8, f"ran {waited:.2f} s after it was sent, its delay 0.3 s"


def test_the_receivers_hand_off_wakes_the_consumer_too(idle: Idle, stack: Stack) -> None:
    async def hand_off(n: int) -> str:
        log = AsyncEventLog(stack.redis.url, Retention())
        try:
            record = EventRecord(id=f"ev-{n}", source="gitea", receiver="default", kind="git_pushed", event={})
            step = {"stage": "delivery", "status": "accepted", "detail": "test"}
            return (await log.accept(record, [f"wake:{n}"], encode_for_queue(record.id), step)).verdict
        finally:
            await log.aclose()

    for n in range(3):
        time.sleep(BACKED_OFF_SECONDS)
        sent = time.monotonic()
        assert asyncio.run(hand_off(n)) == "accepted"
        assert idle.wait(f"ev-{n}") - sent < 0.5, "found by the next poll, not woken"


def test_without_a_wake_up_the_poll_still_finds_the_message(idle: Idle, redis_client: redis.Redis) -> None:
    """A wake-up published to nobody (as while Redis restarts) is lost: the message waits for the poll."""
    time.sleep(BACKED_OFF_SECONDS)
    channel = wake_channel(f"{NAMESPACE}:{QUEUE_EVENTS}")
    assert redis_client.pubsub_numsub(channel) == [(channel, 1)]
    idle.broker.client.publish = lambda *args: 0  # type: ignore[method-assign]
    sent = time.monotonic()
    idle.actor.send("ev-quiet")
    assert idle.wait("ev-quiet") - sent <= IDLE_POLL_MS / 1000 + 0.5


def test_wake_ups_piled_up_while_busy_are_read_once_not_answered_one_by_one(stack: Stack, redis_client) -> None:
    """500 messages queued while the consumer is busy publish 500 wake-ups; once it has taken the
    messages, those stale wake-ups must not each wake it for an empty fetch."""
    broker = make_broker(stack.redis.url)
    try:
        dramatiq.actor(lambda n: None, broker=broker, queue_name=QUEUE_EVENTS, actor_name="noop")
        consumer = broker.consume(QUEUE_EVENTS, prefetch=1000, timeout=100)
        assert next(consumer) is None  # idle once: subscribed to its wake-ups from now on
        for n in range(500):
            broker.enqueue(dramatiq.Message(queue_name=QUEUE_EVENTS, actor_name="noop", args=(n,), kwargs={},
                                            options={}))
        taken = 0
        while taken < 500:
            message = next(consumer)
            if message is not None:
                consumer.ack(message)
                taken += 1
        empty, until = 0, time.monotonic() + 0.3
        while time.monotonic() < until:
            assert next(consumer) is None
            empty += 1
        assert empty < 30, f"{empty} empty fetches in 0.3 s: woken by stale wake-ups"
    finally:
        broker.close()
