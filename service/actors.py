"""The dramatiq actors: thin wrappers that hand a message's ids to ``service.pipeline``.

Imported by the worker (``dramatiq service.actors``); the broker comes from the config named
by ``SHIPLINE_CONFIG``. Failure policy: a ``PermanentError`` fails at once; anything else is
retried with backoff (``service.broker``); either way, when no retry is left the event is marked
``failed`` with the error, and dramatiq keeps the message in its dead-letter set.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from functools import cache
from typing import Any, NoReturn

import dramatiq
from dramatiq.middleware import Middleware

from handlers.errors import PermanentError, TransientError
from service import broker as wiring
from service import metrics, rollback
from service.buildcache import BuildCacheJanitor
from service.config import Config, load_config
from service.environments import EnvironmentStatusStore
from service.livestate import DriftWatcher, caches
from service.logs import ActorRunLog
from service.pipeline import Pipeline
from service.polling import Poller
from service.store import EventStore
from service.stuckwatch import StuckWatch

log = logging.getLogger("shipline.worker")
TICK_SECONDS = 5
BUILD_TIME_MARGIN_SECONDS = 120
"""A build's own timeout kills its process group; the actor's limit is a backstop just after it."""


def should_retry(actor: Any, retries: int, exception: BaseException) -> bool:
    """dramatiq's own rule for this actor: its ``throws`` are never retried, the rest up to its
    ``max_retries`` (declared on each actor below)."""
    if isinstance(exception, actor.options.get("throws") or ()):
        return False
    return retries < int(actor.options.get("max_retries", config().queue.max_retries))


def retry_in(exception: TransientError) -> NoReturn:
    """A transient error that knows when the world may have healed is retried then, not on the backoff."""
    if exception.delay is None:
        raise exception
    raise dramatiq.Retry(f"{type(exception).__name__}: {exception}", delay=int(exception.delay * 1000)) from exception


class FailureVisibility(Middleware):
    """Marks an event failed (with the error) once its message will not be retried again."""

    def after_process_message(self, broker: Any, message: Any, *, result: Any = None,
                              exception: BaseException | None = None) -> None:
        if exception is None:
            return
        retries = message.options.get("retries", 0)
        final = not should_retry(broker.get_actor(message.actor_name), retries, exception)
        log.warning("%s failed (attempt %d%s): %s", message.actor_name, retries + 1,
                    ", giving up" if final else ", will retry", exception)  # the run's context is bound
        if final:
            pipeline().give_up(message.actor_name, tuple(message.args), exception)


class Reconciler(Middleware):
    """In each worker process: the drift watcher on the cluster caches (drift seen in seconds),
    and a loop that asks for the periodic reconcile of each environment (one worker at a time:
    the safety net for missed webhooks and missed watch events), closes releases whose build
    never reported back, prunes the local build storage (``service.buildcache``) and publishes
    the caches' state for the API."""

    def after_worker_boot(self, broker: Any, worker: Any) -> None:
        p = pipeline()
        DriftWatcher(p.config.environments, on_drift=p.drift_seen, busy=p.syncing).start()
        threading.Thread(target=self._loop, name="shipline-reconciler", daemon=True).start()

    def _loop(self) -> None:
        janitor = BuildCacheJanitor(pipeline().config)
        while True:
            time.sleep(TICK_SECONDS)
            try:
                p = pipeline()
                p.request_due_reconciles()
                p.close_overdue_releases()
                Poller(p.config, p.r, submit=p.submit).tick()
                janitor.tick()
                statuses = EnvironmentStatusStore(p.r)
                for name, cache in caches().items():
                    statuses.put_cache(name, {"scopes": cache.status(), "objects": len(cache), "pid": os.getpid()})
                    metrics.CACHE_OBJECTS.labels(cluster=name).set(len(cache))
                    metrics.CACHE_BYTES.labels(cluster=name).set(cache.footprint())
            except Exception:  # noqa: BLE001 - keep the loop alive; the next tick retries
                log.exception("reconcile tick failed")


@cache
def config() -> Config:
    return load_config()


@cache
def pipeline() -> Pipeline:
    cfg = config()
    store = EventStore.from_url(cfg.redis.url, retention=cfg.redis.retention)

    def enqueue(queue: str, actor: str, *args: str) -> None:
        broker.enqueue(wiring.message(queue, actor, *args))

    return Pipeline(cfg, store, enqueue)


broker = wiring.install_broker(config().redis.url, max_retries=config().queue.max_retries,
                                min_backoff_ms=config().queue.min_backoff_ms,
                                max_backoff_ms=config().queue.max_backoff_ms)
# "after" hooks run in reverse order: FailureVisibility logs while ActorRunLog's context is bound
broker.add_middleware(ActorRunLog(  # one line per actor run; logging set up at worker boot
    correlation=lambda event_id: getattr(pipeline().store.get(event_id), "correlation_id", ""),
    environment_actors=("bump_env", "sync_env", "rollback_env")))
broker.add_middleware(FailureVisibility())
broker.add_middleware(Reconciler())
broker.add_middleware(StuckWatch(  # a thread blocked past its limit: exit, redeliver, give up after two hangs
    on_give_up=lambda message, error: pipeline().give_up(message.actor_name, tuple(message.args), error),
    grace_seconds=config().queue.stuck_grace_seconds))


PERMANENT = (PermanentError,)
STAGE_TIME_LIMIT_MS = 15 * 60 * 1000
"""A backstop for bump, sync and routing (each has its own subprocess and request timeouts)."""


@dramatiq.actor(queue_name=wiring.QUEUE_EVENTS, actor_name="process_event", throws=PERMANENT,
                priority=wiring.ACTOR_PRIORITY["process_event"], max_retries=config().queue.max_retries,
                time_limit=STAGE_TIME_LIMIT_MS)
def process_event(event_id: str) -> None:
    try:
        pipeline().process_event(event_id)
    except TransientError as exc:
        retry_in(exc)


@dramatiq.actor(queue_name=wiring.QUEUE_BUILD, actor_name="build_repo", throws=PERMANENT,
                priority=wiring.ACTOR_PRIORITY["build_repo"], max_retries=config().build.max_retries,
                time_limit=(config().build.timeout_seconds + BUILD_TIME_MARGIN_SECONDS) * 1000)
def build_repo(event_id: str, repo_name: str) -> None:
    try:
        pipeline().build(event_id, repo_name)
    except TransientError as exc:
        retry_in(exc)


@dramatiq.actor(queue_name=wiring.QUEUE_BUMP, actor_name="bump_env", throws=PERMANENT,
                priority=wiring.ACTOR_PRIORITY["bump_env"], max_retries=config().queue.max_retries,
                time_limit=STAGE_TIME_LIMIT_MS)
def bump_env(env_name: str, request: str = "0") -> None:
    try:
        pipeline().bump(env_name, int(request))
    except TransientError as exc:
        retry_in(exc)


@dramatiq.actor(queue_name=wiring.QUEUE_SYNC, actor_name="sync_env", throws=PERMANENT,
                priority=wiring.ACTOR_PRIORITY["sync_env"], max_retries=config().queue.max_retries,
                time_limit=STAGE_TIME_LIMIT_MS)
def sync_env(env_name: str, request: str = "0") -> None:
    try:
        pipeline().sync(env_name, int(request))
    except TransientError as exc:
        retry_in(exc)


@dramatiq.actor(queue_name=wiring.QUEUE_BUMP, actor_name="rollback_env", max_retries=0,
                time_limit=STAGE_TIME_LIMIT_MS)
def rollback_env(env_name: str, to: str = "") -> None:
    """``shipline rollback``: once, visibly (a rollback is not retried behind the operator's back)."""
    p = pipeline()
    env = p.config.environment(env_name)
    try:
        rollback.by_hand(p, env, to or None)
    except Exception as exc:
        EnvironmentStatusStore(p.r).note_rollback(env_name, {"outcome": "failed", "reason": f"{exc}"[:2000]})
        raise
