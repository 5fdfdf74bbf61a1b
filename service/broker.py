"""Queue wiring: a dramatiq Redis broker whose every limit is written down here.

Why these numbers (dramatiq 2.2 ``brokers/redis.py`` and ``redis/dispatch.lua``):
- ``HEARTBEAT_TIMEOUT_MS``: every broker command of a worker process refreshes its heartbeat, and
  an idle consumer fetches at least every ``WORKER_IDLE_POLL_MS``, so a live worker is never silent
  for 15 s; a silent one is dead and its fetched-but-unacked messages
  (``__acks__.<worker>.<queue>``) may be requeued.
- ``MAINTENANCE_CHANCE``: per million broker commands (``ack``/``nack`` excluded), how many also
  run that requeue sweep, for *the command's queue only*. Each worker process polls each queue with
  ``fetch`` when idle, so a restarted idle worker triggers the sweep itself; no new traffic is
  needed. At 250_000 (25 %) the wait for a sweep after the heartbeat timeout is geometric: mean 4
  polls, p99 16 polls (1.6 s at 100 ms polls; 16 s even at dramatiq's default 1 s). A ``kill
  -9``-ed worker's message is thus requeued within 15 s + 16 s of the kill at worst:
  ``REDELIVERY_BOUND_SECONDS`` (45) keeps a margin for a loaded machine. Measured by
  ``tests/chaos/test_kill_worker.py``: 15-17 s (1 s polls), 15 s (100 ms polls). A sweep costs two
  sorted-set reads, plus a ``KEYS`` scan only while a dead worker is still listed.
- Locks held by a killed worker are leases (``service.pipeline.LOCK_TIMEOUT_SECONDS``, 20 s), so
  they are free by the time its job is redelivered.
- Retries: ``MAX_RETRIES`` attempts with exponential backoff from 1 s to 5 min (the config's
  ``queue:`` section may change them), then the message goes to dramatiq's dead-letter set
  (``shipline-q:<queue>.XQ``, kept ``DEAD_MESSAGE_TTL_MS``) and the event is marked failed.
- ``TIME_LIMIT_MS``: a backstop only; builds enforce their own subprocess timeout.
- ``WORKER_IDLE_POLL_MS``: an idle consumer backs off to at most this between fetches (dramatiq's
  default is 1 s). Each stage hands over through a queue, so with 1 s a release waited up to a
  second per hop (push → build → image → bump → sync); at 100 ms an idle worker costs ~10 cheap
  fetches a second per queue, and the requeue sweep above comes sooner too.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import AgeLimit, Callbacks, Pipelines, Retries, ShutdownNotifications, TimeLimit

HEARTBEAT_TIMEOUT_MS = 15_000
MAINTENANCE_CHANCE = 250_000
REDELIVERY_BOUND_SECONDS = 45
MAX_RETRIES = 5
MIN_BACKOFF_MS = 1_000
MAX_BACKOFF_MS = 300_000
TIME_LIMIT_MS = 3_600_000
WORKER_IDLE_POLL_MS = 100
DEAD_MESSAGE_TTL_MS = 30 * 24 * 3600 * 1000
NAMESPACE = "shipline-q"
RETRY_ENQUEUE_WAIT_SECONDS = 3600
"""How long a worker thread waits for Redis to come back to enqueue a retry (see DurableRetries)."""

QUEUE_EVENTS = "events"
QUEUE_BUILD = "build"
QUEUE_BUMP = "bump"
QUEUE_SYNC = "sync"
QUEUES = (QUEUE_EVENTS, QUEUE_BUILD, QUEUE_BUMP, QUEUE_SYNC)


class DurableRetries(Retries):
    """dramatiq's ``Retries``, except that a retry is not lost when Redis is down.

    Stock ``Retries`` enqueues the retry from ``after_process_message``; if Redis is down that
    raises, dramatiq only logs it, and the consumer then acks the original message as soon as
    Redis is back: the message is gone (found by the chaos scenario 'redis kill -9 under a
    stream': an accepted event stayed ``enqueued`` forever). Here the worker thread waits for Redis
    and enqueues the retry; the ack, which needs Redis too, can only follow it.
    """

    def after_process_message(self, broker: Any, message: Any, *, result: Any = None,
                              exception: BaseException | None = None) -> None:
        try:
            super().after_process_message(broker, message, result=result, exception=exception)
        except (redis.ConnectionError, redis.TimeoutError):  # only the enqueue at its end touches Redis
            self._enqueue_when_back(broker, message)

    def _enqueue_when_back(self, broker: Any, message: Any) -> None:
        deadline = time.monotonic() + RETRY_ENQUEUE_WAIT_SECONDS
        while True:
            time.sleep(1)
            try:
                broker.enqueue(message, delay=self.min_backoff)
                return
            except (redis.ConnectionError, redis.TimeoutError):
                if time.monotonic() > deadline:
                    logging.getLogger("shipline.worker").critical(
                        "retry of %s lost: Redis unreachable for %ss", message.message_id, RETRY_ENQUEUE_WAIT_SECONDS)
                    raise


def make_broker(redis_url: str, *, max_retries: int = MAX_RETRIES, min_backoff_ms: int = MIN_BACKOFF_MS,
                max_backoff_ms: int = MAX_BACKOFF_MS) -> RedisBroker:
    """The broker; the retry numbers default to the ones above (``queue:`` in the config)."""
    middleware = [
        AgeLimit(), TimeLimit(time_limit=TIME_LIMIT_MS), ShutdownNotifications(), Callbacks(),
        Pipelines(),
        DurableRetries(max_retries=max_retries, min_backoff=min_backoff_ms, max_backoff=max_backoff_ms),
    ]
    broker = RedisBroker(
        url=redis_url, middleware=middleware, namespace=NAMESPACE,
        heartbeat_timeout=HEARTBEAT_TIMEOUT_MS, maintenance_chance=MAINTENANCE_CHANCE,
        dead_message_ttl=DEAD_MESSAGE_TTL_MS,
        socket_timeout=5, socket_connect_timeout=2, health_check_interval=10,
    )
    for queue in QUEUES:
        broker.declare_queue(queue)
    return broker


def install_broker(redis_url: str, **retries: int) -> RedisBroker:
    """Make ``broker`` the global one (dramatiq needs it before any ``@actor``)."""
    broker = make_broker(redis_url, **retries)
    dramatiq.set_broker(broker)
    return broker


def message(queue: str, actor: str, *args: str) -> dramatiq.Message:
    """A message for ``actor`` carrying only references (ids), never payloads."""
    return dramatiq.Message(queue_name=queue, actor_name=actor, args=args, kwargs={}, options={})
