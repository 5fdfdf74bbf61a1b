"""Metrics: queue depth reads dramatiq's real queue keys, lead time counts once per release, and the
worker's forked processes are visible on its own endpoint (the values after a real push are checked
in tests/ui/test_dashboard.py)."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from devstack.process import free_port, wait_until
from service import metrics
from service.app import create_app
from service.broker import QUEUE_BUILD, make_broker, message
from service.config import parse_config
from service.store import EventRecord, EventStore


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_queue_depth_counts_messages_waiting_in_dramatiqs_queue_lists(stack, redis_client) -> None:
    broker = make_broker(stack.redis.url)
    for n in range(3):
        broker.enqueue(message(QUEUE_BUILD, "build_repo", f"event-{n}", "shop"))
    assert redis_client.llen("shipline-q:build") == 3  # the key the gauge reads
    app = create_app(parse_config({"redis": {"url": stack.redis.url}}))
    with TestClient(app) as http:
        body = http.get("/metrics").text
    got = samples(body)
    assert got[("shipline_queue_depth", (("queue", "build"),))] == 3
    assert got[("shipline_queue_depth", (("queue", "sync"),))] == 0


def test_lead_time_is_observed_once_per_release_and_environment(redis_client) -> None:
    store = EventStore(redis_client)
    record = EventRecord(id="push1", source="gitea", receiver="default", kind="git_pushed", event={},
                         received_at=time.time() - 42)
    store.save(record)
    before = metrics.LEAD_TIME.labels(environment="qa")._sum.get()
    first = metrics.observe_lead_time(store, "qa", ["push1", "missing"])
    again = metrics.observe_lead_time(store, "qa", ["push1"])  # a later reconcile of the same release
    observed = metrics.LEAD_TIME.labels(environment="qa")._sum.get() - before
    assert 42 <= observed < 60 and list(first) == ["push1"] and again == {}
    assert metrics.lead_times(store, "push1") == {"qa": first["push1"]}, "the API keeps the first value"
    assert 0 < redis_client.ttl("shipline:leadtime:push1") <= store.dedupe_ttl


def test_worker_metrics_merge_the_forked_worker_processes() -> None:
    port = free_port()
    script = textwrap.dedent(f"""
        import multiprocessing, time
        from service.workermetrics import serve_worker_metrics
        assert serve_worker_metrics("127.0.0.1", {port})
        def work(outcome):
            from service.metrics import STAGE_SECONDS
            STAGE_SECONDS.labels(stage="build", outcome=outcome).observe(1.5)
        for outcome in ("done", "done", "failed"):
            p = multiprocessing.get_context("fork").Process(target=work, args=(outcome,))
            p.start(); p.join()
        print("ready", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{port}/metrics").status_code == 200, timeout=10,
                   what="worker metrics endpoint")
        got = samples(httpx.get(f"http://127.0.0.1:{port}/metrics").text)
        done = (("outcome", "done"), ("stage", "build"))
        assert got[("shipline_stage_duration_seconds_count", done)] == 2
        assert got[("shipline_stage_duration_seconds_sum", done)] == 3.0
        assert got[("shipline_stage_duration_seconds_count", (("outcome", "failed"), ("stage", "build")))] == 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_worker_metrics_off_or_port_taken_is_not_fatal_to_the_workers() -> None:
    from service.workermetrics import serve_worker_metrics

    assert serve_worker_metrics("127.0.0.1", 0) is None
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        script = textwrap.dedent(f"""
            import multiprocessing
            from service.workermetrics import serve_worker_metrics
            assert serve_worker_metrics("127.0.0.1", {taken.getsockname()[1]}) is None
            def work():
                from service.metrics import STAGE_SECONDS
                STAGE_SECONDS.labels(stage="sync", outcome="Healthy").observe(0.5)
            p = multiprocessing.get_context("fork").Process(target=work)
            p.start(); p.join()
            print("worker exit", p.exitcode)
        """)
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "worker exit 0", out.stderr
    assert "worker metrics not served" in out.stderr
