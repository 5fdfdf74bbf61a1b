"""Queue wiring: a dramatiq Redis broker whose every limit is written down here.

Why these numbers (dramatiq 2.2 ``brokers/redis.py`` and ``redis/dispatch.lua``):
- ``HEARTBEAT_TIMEOUT_MS``: every broker command of a worker process refreshes its heartbeat, and
  an idle consumer fetches at least every ``IDLE_WAKEABLE_POLL_MS``, so a live worker is never
  silent for 15 s; a silent one is dead and its fetched-but-unacked messages
  (``__acks__.<worker>.<queue>``) may be requeued.
- ``MAINTENANCE_CHANCE``: per million broker commands (``ack``/``nack`` excluded), how many also
  run that requeue sweep, for *the command's queue only*. Each worker process polls each queue with
  ``fetch`` when idle, so a restarted idle worker triggers the sweep itself; no new traffic is
  needed. At 500_000 (50 %) the wait for a sweep after the heartbeat timeout is geometric: mean 2
  polls, p99 7 polls (14 s at the 2 s idle poll below). A ``kill -9``-ed worker's message is thus
  requeued within 15 s + 14 s of the kill at worst: ``REDELIVERY_BOUND_SECONDS`` (45) keeps a
  margin for a loaded machine. Measured by ``tests/chaos/test_kill_worker.py``: 15-17 s (25 %, 1 s
  polls), 15 s (25 %, 100 ms polls). A sweep costs two sorted-set reads, plus a ``KEYS`` scan only
  while a dead worker is still listed: at 50 % of the polls after cutting them fourfold, fewer
  sweeps than before.
- Locks held by a killed worker are leases (``service.pipeline.LOCK_TIMEOUT_SECONDS``, 20 s), so
  they are free by the time its job is redelivered.
- Retries: ``MAX_RETRIES`` attempts with exponential backoff from 1 s to 5 min (the config's
  ``queue:`` section may change them), then the message goes to dramatiq's dead-letter set
  (``shipline-q:<queue>.XQ``, kept ``DEAD_MESSAGE_TTL_MS``) and the event is marked failed.
- ``TIME_LIMIT_MS``: a backstop only; builds enforce their own subprocess timeout.
- ``WORKER_IDLE_POLL_MS``: a consumer whose messages are still being worked on backs off to at
  most this between fetches (dramatiq's default is 1 s): its next fetch waits for capacity, and an
  ack wakes nobody. ``IDLE_WAKEABLE_POLL_MS``: a consumer with nothing out backs off to at most
  this, since a new message wakes it (below), a delayed one (a retry) included; each poll also
  runs the requeue sweep above with its 50 % chance, so p99 7 polls = 14 s after the heartbeat
  timeout, inside ``REDELIVERY_BOUND_SECONDS``. At rest these polls were the worker's floor: a
  py-spy ``--gil`` profile of a worker with no environment put 55 % of its samples in ``fetch``
  (22 a second over 4 queues and their delay queues at a 500 ms cap) and 21 % in worker threads
  waking from dramatiq's ``worker_timeout`` (``WORKER_THREAD_POLL_MS``: only how soon an idle
  thread notices a shutdown, as a new message wakes it at once; it was the 100 ms above).
- Stranded messages (``RecoveringRedisBroker``): dramatiq's ``fetch`` moves ids into this worker's
  ack set inside Redis; if the reply is lost (Redis killed, a partition, a socket timeout) the
  worker never sees them, and as its heartbeat stays fresh no sweep ever requeues them. So every
  consumer, when it (re)connects, first requeues the ids of its own ack set that this process is
  not holding (handed to a worker thread and not yet acked). Bound, from the moment Redis answers
  again: dramatiq's consumer restart delay (3 s) + one attempt still waiting on a dead connection
  (``SOCKET_TIMEOUT_SECONDS``) = 8 s, stated as ``RECONNECT_REQUEUE_BOUND_SECONDS`` (10). Measured
  by ``tests/chaos/test_ingest_faults.py`` (Redis ``kill -9``) and ``tests/chaos/netfaults.py``
  (a 30 s partition): see README, "Reliability limits".
- Socket timeouts: ``SOCKET_TIMEOUT_SECONDS`` on every command, ``SOCKET_CONNECT_TIMEOUT_SECONDS``
  on connect, so a half-open connection (a partition) fails a command instead of hanging it.
- ``ACTOR_PRIORITY`` (dramatiq's: lower runs first, among the messages a worker process has
  fetched and not yet started): routing before build, bump and sync. Routing is what lets the
  later stages coalesce (a bump commits every event pending for its environment, a sync covers
  every request made before it), while a bump or sync job that finds its lock held keeps its
  thread until the holder has covered it. Taken in arrival order, those waiters held most
  threads during a backlog and routing starved (py-spy of both workers draining 4,000
  deliveries: 11-16 of 16 threads waiting on a lock); routing first, the same backlog drained in
  25-33 s with 3-6 manifests commits instead of 61-75 s with 187-217 (``tests/chaos/backlog.py``).
  The price, only while routing itself has a backlog: the later stages wait until it is routed.
  With threads free, the order never matters.
- Wake-ups: between fetches an idle consumer waits on its queue's pub/sub channel
  (``service.store.wake_channel``) instead of sleeping, and every enqueue (the receiver's hand-off
  and ``enqueue`` here, a delayed one to its delay queue's channel) publishes there, so a hop
  between stages costs a round trip, not half a poll on average (~40 ms at 100 ms polls, paid at
  every hop of a release), and a retry reaches its delay queue's consumer at once. Only a hint: a lost
  wake-up (none subscribed, Redis restarting) leaves the poll above, which is unchanged, as is the
  heartbeat it keeps.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import compute_backoff
from dramatiq.errors import ConnectionClosed
from dramatiq.middleware import AgeLimit, Callbacks, Pipelines, Retries, ShutdownNotifications, TimeLimit

from service.chunks import chunks
from service.store import wake_channel

HEARTBEAT_TIMEOUT_MS = 15_000
MAINTENANCE_CHANCE = 500_000
REDELIVERY_BOUND_SECONDS = 45
MAX_RETRIES = 5
MIN_BACKOFF_MS = 1_000
MAX_BACKOFF_MS = 300_000
TIME_LIMIT_MS = 3_600_000
WORKER_IDLE_POLL_MS = 100
IDLE_WAKEABLE_POLL_MS = 2_000
WORKER_THREAD_POLL_MS = 1_000
SOCKET_TIMEOUT_SECONDS = 5
SOCKET_CONNECT_TIMEOUT_SECONDS = 2
RECONNECT_REQUEUE_BOUND_SECONDS = 10
REQUEUE_CHUNK = 500
DEAD_MESSAGE_TTL_MS = 30 * 24 * 3600 * 1000
NAMESPACE = "shipline-q"
RETRY_ENQUEUE_WAIT_SECONDS = 3600
"""How long a worker thread waits for Redis to come back to enqueue a retry (see DurableRetries)."""

QUEUE_EVENTS = "events"
QUEUE_BUILD = "build"
QUEUE_BUMP = "bump"
QUEUE_SYNC = "sync"
QUEUES = (QUEUE_EVENTS, QUEUE_BUILD, QUEUE_BUMP, QUEUE_SYNC)
ACTOR_PRIORITY = {"process_event": 0, "build_repo": 10, "bump_env": 10, "sync_env": 10}


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


class HeldMessages:
    """Redis message ids this process handed to its worker threads and has not acked, nacked or
    requeued yet, per queue: what a reconnecting consumer must leave in its ack set."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, set[str]] = {}

    def add(self, queue: str, message_id: str) -> None:
        with self._lock:
            self._held.setdefault(queue, set()).add(message_id)

    def discard(self, queue: str, message_id: str) -> None:
        with self._lock:
            self._held.get(queue, set()).discard(message_id)

    def snapshot(self, queue: str) -> set[str]:
        with self._lock:
            return set(self._held.get(queue, ()))

    def clear(self, queue: str) -> None:
        with self._lock:
            self._held.pop(queue, None)


class RecoveringRedisBroker(RedisBroker):
    """dramatiq's Redis broker whose consumers requeue their stranded messages on (re)connect."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.held = HeldMessages()

    @property
    def consumer_class(self) -> type[_RedisConsumer]:
        return RecoveringConsumer

    def enqueue(self, message: Any, *, delay: int | None = None) -> Any:
        """dramatiq's enqueue, then a wake-up for the idle consumers of the queue it went to (a
        delayed message to the delay queue, whose consumer holds it until it is due and then moves
        it, through here, to its queue)."""
        enqueued = super().enqueue(message, delay=delay)
        with contextlib.suppress(redis.RedisError):  # the message is queued: a consumer's next poll finds it
            self.client.publish(wake_channel(f"{self.namespace}:{enqueued.queue_name}"), "")
        return enqueued

    def requeue_stranded(self, queue: str) -> int:
        """Requeue the ids in this worker's ack set for ``queue`` that no worker thread holds.

        Called by a consumer before its first fetch, from the only thread that fetches ``queue``
        in this process, so the ack set cannot gain a held id meanwhile; an id acked meanwhile is
        left alone by dramatiq's ``requeue`` (it moves only ids it can remove from the ack set).
        A delay queue's messages live in its consumer thread, which dropped them when its
        connection failed (``ConsumerThread`` resets its delay queue): all of them go back.
        """
        acks = f"{self.namespace}:__acks__.{self.broker_id}.{queue}"
        members = {m.decode() if isinstance(m, bytes) else str(m) for m in self.client.smembers(acks)}
        if queue.endswith(".DQ"):
            self.held.clear(queue)
            stranded = sorted(members)
        else:
            stranded = sorted(members - self.held.snapshot(queue))
        for chunk in chunks(stranded, REQUEUE_CHUNK):
            self.do_requeue(queue, *chunk)
        if stranded:
            logging.getLogger("shipline.worker").warning(
                "requeued %d stranded message(s) of %s on reconnect", len(stranded), queue,
                extra={"queue": queue, "requeued": len(stranded), "at": time.time()})
        return len(stranded)


class RecoveringConsumer(_RedisConsumer):
    """dramatiq's Redis consumer plus: stranded messages requeued before the first fetch, every
    message handed out tracked until acked, and a socket timeout treated as the lost connection
    it is (stock dramatiq lets ``redis.TimeoutError`` escape ack, nack and fetch)."""

    def __init__(self, broker: RecoveringRedisBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, queue_name, prefetch, 0)  # dramatiq's idle sleep off: ``_idle`` waits instead
        self.recovered = False
        self.idle_timeout = timeout
        self.idle_misses = 0
        self.busy = False
        """A message was handed out since the last drain (wake-ups may have piled up meanwhile)."""
        self.wakeups: Any = None

    def __next__(self) -> Any:
        try:
            if not self.recovered:
                self.broker.requeue_stranded(self.queue_name)
                self.recovered = True
            if self.busy and not self.message_cache:
                self._drain_wakeups()  # published before the fetch below: it answers them
                self.busy = False
            message = super().__next__()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise ConnectionClosed(exc) from None
        if message is None:
            self._idle()
            return None
        self.idle_misses, self.busy = 0, True
        self.broker.held.add(self.queue_name, message.options["redis_message_id"])
        return message

    def _idle(self) -> None:
        """Dramatiq's idle backoff, cut short by a wake-up: up to ``WORKER_IDLE_POLL_MS`` while
        messages are out (the next fetch waits for an ack, which wakes nobody), up to
        ``IDLE_WAKEABLE_POLL_MS`` (or dramatiq's ``worker_timeout``, if longer) when none is (new
        ones wake it)."""
        cap = (min(self.idle_timeout, WORKER_IDLE_POLL_MS) if self.outstanding_message_count
               else max(self.idle_timeout, IDLE_WAKEABLE_POLL_MS))
        self.idle_misses, backoff_ms = compute_backoff(self.idle_misses, max_backoff=cap)
        started = time.monotonic()
        try:
            if self.wakeups is None:
                self.wakeups = self.broker.client.pubsub(ignore_subscribe_messages=True)
                self.wakeups.subscribe(wake_channel(f"{self.broker.namespace}:{self.queue_name}"))
            if self.wakeups.get_message(timeout=backoff_ms / 1000) is not None:
                self.idle_misses = 0
            return
        except (redis.RedisError, OSError):
            self._close_wakeups()
        time.sleep(max(0.0, backoff_ms / 1000 - (time.monotonic() - started)))

    def _drain_wakeups(self) -> None:
        """Read the wake-ups that piled up while this consumer was busy (one per message queued
        meanwhile; unread, they would each wake it later for nothing, and fill Redis's buffer)."""
        try:
            while self.wakeups is not None and self.wakeups.get_message(timeout=0) is not None:
                pass
        except (redis.RedisError, OSError):
            self._close_wakeups()

    def _close_wakeups(self) -> None:
        wakeups, self.wakeups = self.wakeups, None
        if wakeups is not None:
            with contextlib.suppress(redis.RedisError, OSError):
                wakeups.close()

    def close(self) -> None:
        self._close_wakeups()
        super().close()

    def ack(self, message: Any) -> None:
        self._settle(super().ack, message)

    def nack(self, message: Any) -> None:
        self._settle(super().nack, message)

    def requeue(self, messages: Any) -> None:
        messages = list(messages)
        try:
            super().requeue(messages)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise ConnectionClosed(exc) from None  # they stay in the ack set: the next connect requeues them
        for message in messages:
            self.broker.held.discard(self.queue_name, message.options["redis_message_id"])

    def _settle(self, settle: Any, message: Any) -> None:
        """Ack or nack; held until Redis confirmed it (dramatiq retries on ``ConnectionClosed``)."""
        try:
            settle(message)
        except redis.TimeoutError as exc:
            raise ConnectionClosed(exc) from None
        self.broker.held.discard(self.queue_name, message.options["redis_message_id"])


def make_broker(redis_url: str, *, max_retries: int = MAX_RETRIES, min_backoff_ms: int = MIN_BACKOFF_MS,
                max_backoff_ms: int = MAX_BACKOFF_MS) -> RedisBroker:
    """The broker; the retry numbers default to the ones above (``queue:`` in the config)."""
    middleware = [
        AgeLimit(), TimeLimit(time_limit=TIME_LIMIT_MS), ShutdownNotifications(), Callbacks(),
        Pipelines(),
        DurableRetries(max_retries=max_retries, min_backoff=min_backoff_ms, max_backoff=max_backoff_ms),
    ]
    # Our own pool: given a URL, dramatiq makes one that ignores socket options (no timeouts at all).
    pool = redis.ConnectionPool.from_url(redis_url, socket_timeout=SOCKET_TIMEOUT_SECONDS,
                                         socket_connect_timeout=SOCKET_CONNECT_TIMEOUT_SECONDS,
                                         health_check_interval=10)
    broker = RecoveringRedisBroker(
        client=redis.Redis(connection_pool=pool), middleware=middleware, namespace=NAMESPACE,
        heartbeat_timeout=HEARTBEAT_TIMEOUT_MS, maintenance_chance=MAINTENANCE_CHANCE,
        dead_message_ttl=DEAD_MESSAGE_TTL_MS,
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
