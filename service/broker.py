"""Queue wiring: a dramatiq Redis broker whose every limit is written down here.

Why these numbers:
- ``HEARTBEAT_TIMEOUT_MS``: a worker silent this long is dead; its unacked messages are requeued.
- ``MAINTENANCE_CHANCE``: per million broker commands, how often that requeue sweep runs. Idle
  consumers poll about once a second, so 100_000 (10 %) means a sweep every ~10 s per consumer.
  A message held by a ``kill -9``-ed worker is therefore redelivered within about
  heartbeat (15 s) + sweep interval (~10 s, p99 ~45 s): ``REDELIVERY_BOUND_SECONDS``.
- Retries: ``MAX_RETRIES`` attempts with exponential backoff from 1 s to 5 min, then the message
  goes to dramatiq's dead-letter set (``dramatiq:<queue>.XQ``) and the event is marked failed.
- ``TIME_LIMIT_MS``: a backstop only; builds enforce their own subprocess timeout.
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import AgeLimit, Callbacks, Pipelines, Retries, ShutdownNotifications, TimeLimit

HEARTBEAT_TIMEOUT_MS = 15_000
MAINTENANCE_CHANCE = 100_000
REDELIVERY_BOUND_SECONDS = 90
MAX_RETRIES = 5
MIN_BACKOFF_MS = 1_000
MAX_BACKOFF_MS = 300_000
TIME_LIMIT_MS = 3_600_000
DEAD_MESSAGE_TTL_MS = 30 * 24 * 3600 * 1000
NAMESPACE = "shipline-q"

QUEUE_EVENTS = "events"
QUEUE_BUILD = "build"
QUEUE_BUMP = "bump"
QUEUE_SYNC = "sync"
QUEUES = (QUEUE_EVENTS, QUEUE_BUILD, QUEUE_BUMP, QUEUE_SYNC)


def make_broker(redis_url: str) -> RedisBroker:
    middleware = [
        AgeLimit(), TimeLimit(time_limit=TIME_LIMIT_MS), ShutdownNotifications(), Callbacks(),
        Pipelines(),
        Retries(max_retries=MAX_RETRIES, min_backoff=MIN_BACKOFF_MS, max_backoff=MAX_BACKOFF_MS),
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


def install_broker(redis_url: str) -> RedisBroker:
    """Make ``broker`` the global one (dramatiq needs it before any ``@actor``)."""
    broker = make_broker(redis_url)
    dramatiq.set_broker(broker)
    return broker


def message(queue: str, actor: str, *args: str) -> dramatiq.Message:
    """A message for ``actor`` carrying only references (ids), never payloads."""
    return dramatiq.Message(queue_name=queue, actor_name=actor, args=args, kwargs={}, options={})
