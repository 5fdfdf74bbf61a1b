"""Prometheus metrics: deliveries, queue depth, backlog, stage durations and outcomes, lead time.

Two processes, two endpoints. The receiver serves ``/metrics`` (deliveries, queue depth, backlog);
with ``shipline serve --workers N`` its processes share a multiprocess directory too. Stage
durations and lead time are recorded where the work runs, in the worker's processes, so
``shipline worker`` serves them on ``server.worker_metrics_port`` (default 9108, 0 = off) in
prometheus_client's multiprocess mode: every dramatiq worker process writes to a shared
directory and the worker's parent process serves the sum (``service.workermetrics``).
"""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.responses import Response

from service.chunks import chunks
from service.store import READ_CHUNK

DELIVERIES = Counter("shipline_deliveries_total", "Webhook deliveries by source and outcome",
                     ["source", "outcome"])
STAGE_SECONDS = Histogram("shipline_stage_duration_seconds", "Duration of build, bump and sync runs",
                          ["stage", "outcome"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300))
LEAD_TIME = Histogram("shipline_lead_time_seconds", "Push received to environment healthy",
                      ["environment"], buckets=(1, 2, 5, 10, 30, 60, 120, 300, 900))
QUEUE_DEPTH = Gauge("shipline_queue_depth", "Messages waiting per stage queue (ready to run)", ["queue"],
                    multiprocess_mode="mostrecent")
QUEUE_DELAYED = Gauge("shipline_queue_delayed", "Messages waiting for a retry's backoff, per stage queue",
                      ["queue"], multiprocess_mode="mostrecent")
BUILD_STORAGE_IMAGES = Gauge("shipline_build_storage_images", "Images in the local buildah storage after the "
                             "last prune (build.cache_keep)", multiprocess_mode="mostrecent")
BUILD_STORAGE_PRUNED = Counter("shipline_build_storage_pruned_total", "Images removed from the local buildah storage")
CACHE_OBJECTS = Gauge("shipline_cache_objects", "Objects in the worker's live-state cache of a cluster",
                      ["cluster"], multiprocess_mode="livemax")
CACHE_BYTES = Gauge("shipline_cache_bytes", "Memory the live-state cache of a cluster holds, summed over the "
                    "worker's processes (each keeps its own copy)", ["cluster"], multiprocess_mode="livesum")
BACKLOG = Gauge("shipline_backlog_events", "Accepted events not yet in a final state (the receiver answers "
                "503 past redis.max_backlog)", multiprocess_mode="mostrecent")


def refresh_queue_depth(store: Any) -> None:
    from service.broker import NAMESPACE, QUEUES

    try:
        pipe = store.r.pipeline(transaction=False)
        for queue in QUEUES:
            pipe.llen(f"{NAMESPACE}:{queue}")
            pipe.llen(f"{NAMESPACE}:{queue}.DQ")
        counts = pipe.execute()
    except Exception:  # noqa: BLE001 - metrics must never fail the scrape
        return
    for i, queue in enumerate(QUEUES):
        QUEUE_DEPTH.labels(queue=queue).set(counts[2 * i])
        QUEUE_DELAYED.labels(queue=queue).set(counts[2 * i + 1])


def render() -> Response:
    """This process's metrics, or every receiver process's when they share a multiprocess directory."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


LEAD_TIMES = "shipline:leadtime:"


def observe_lead_time(store: Any, environment: str, correlation_ids: list[str]) -> dict[str, float]:
    """Push received → ``environment`` Healthy, once per release (its correlation record's
    ``received_at``); a later reconcile of the same release does not count again. Kept per
    release (``leadtime:<id>``: environment → seconds, its first value) for the API; returns what
    it observed. One round trip per ``READ_CHUNK`` releases besides the reads: a sync after a
    backlog covers tens of thousands."""
    observed: dict[str, float] = {}
    for chunk in chunks(correlation_ids, READ_CHUNK):
        received = {c: float(facts["received_at"]) for c, facts in zip(chunk, store.facts(chunk), strict=True)
                    if facts and facts.get("received_at")}
        now = time.time()
        seconds = {c: round(max(0.0, now - at), 3) for c, at in received.items()}
        with store.r.pipeline(transaction=False) as pipe:
            for correlation_id, value in seconds.items():
                pipe.hsetnx(LEAD_TIMES + correlation_id, environment, value)  # the first sync's value stays
                pipe.expire(LEAD_TIMES + correlation_id, store.dedupe_ttl)
            first = pipe.execute()[::2]
        for (correlation_id, value), new in zip(seconds.items(), first, strict=True):
            if new:
                LEAD_TIME.labels(environment=environment).observe(value)
                observed[correlation_id] = value
    return observed


def lead_times(store: Any, correlation_id: str) -> dict[str, float]:
    """Per environment, push received → Healthy for one release."""
    return {env: float(s) for env, s in store.r.hgetall(LEAD_TIMES + correlation_id).items()}

