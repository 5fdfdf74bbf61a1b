"""Nothing accepted is ever lost to a backlog: retention trims only finished events, the receiver
answers 503 + Retry-After past ``redis.max_backlog``, and it refuses to start on a Redis that can
lose an acknowledged write. Against the real Redis of the test stack (or one of its own)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from devstack.process import free_port
from devstack.redis import RedisServer
from devstack.stack import Stack
from handlers.errors import ConfigError
from service.app import create_app
from service.store import EventStore, Retention
from tests.service.test_receiver import QUEUE_KEY, SECRET, github_push, make_config


def push(n: int) -> tuple[bytes, dict[str, str]]:
    """A distinct signed push (its own delivery id and ``after``)."""
    body, headers = github_push(f"d-{n}")
    payload = json.loads(body)
    payload["after"] = f"{n + 1:040x}"  # never all zeros (a deletion)
    body = json.dumps(payload).encode()
    headers["X-Hub-Signature-256"] = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, headers


def app_with(tmp_path: Path, url: str, **redis_settings: object):  # noqa: ANN201
    cfg = make_config(tmp_path, url)
    return create_app(cfg.model_copy(update={"redis": cfg.redis.model_copy(update=redis_settings)}))


def accepted_ids(client: TestClient, count: int, start: int = 0) -> list[str]:
    ids = []
    for n in range(start, start + count):
        answer = client.post("/hooks/github", content=push(n)[0], headers=push(n)[1])
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["event_id"])
    return ids


def test_retention_never_trims_an_unprocessed_event(tmp_path: Path, stack: Stack, redis_client) -> None:
    with TestClient(app_with(tmp_path, stack.redis.url, event_retention=10)) as client:
        ids = accepted_ids(client, 30)  # the workers are stopped: nothing is processed
    store = EventStore(redis_client, retention=Retention(records=10))
    assert all(store.get(i) is not None for i in ids), "an accepted, unprocessed event was trimmed"
    assert redis_client.llen(QUEUE_KEY) == 30
    for event_id in ids[:25]:
        store.set_status(event_id, "done", "ok")
    kept = redis_client.zrange("shipline:events", 0, -1)
    assert len(kept) == 15 and set(ids[25:]) <= set(kept), "the 5 unprocessed ones stay, the oldest done go"
    assert [i for i in ids[:25] if store.get(i) is not None] == ids[15:25], "the newest 10 finished stay"
    assert store.backlog() == 5


def test_a_running_event_is_taken_back_out_of_the_trimmable_set(redis_client) -> None:
    store = EventStore(redis_client, retention=Retention(records=10))
    from service.store import EventRecord

    record = EventRecord(id="e1", source="gitea", receiver="default", kind="git_pushed", event={})
    store.save(record)
    store.set_status("e1", "ignored", "x")
    store.set_status("e1", "running")  # a retried route: work in progress again
    assert redis_client.zcard("shipline:events:final") == 0
    store.set_status("gone", "done")  # an event that is not there leaves no stray key behind
    assert not redis_client.exists("shipline:event:gone")


def test_concurrent_trims_never_over_trim(redis_client) -> None:
    from service.store import EventRecord

    store = EventStore(redis_client, retention=Retention(records=10))
    for n in range(60):
        store.save(EventRecord(id=f"e{n:03d}", source="gitea", receiver="default", kind="git_pushed", event={},
                               received_at=1000 + n))
    threads = [threading.Thread(target=store.set_status, args=(f"e{n:03d}", "done")) for n in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert redis_client.zcard("shipline:events:final") == 10, "exactly the retention, never fewer"
    kept = set(redis_client.zrange("shipline:events", 0, -1))
    assert kept == {f"e{n:03d}" for n in range(40, 60)}  # the newest 10 finished + the 10 unfinished


def metric(client: TestClient, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def test_past_max_backlog_the_receiver_answers_503_and_records_nothing(tmp_path: Path, stack: Stack,
                                                                        redis_client) -> None:
    with TestClient(app_with(tmp_path, stack.redis.url, max_backlog=10)) as client:
        ids = accepted_ids(client, 10)
        refused_before = metric(client, "shipline_deliveries_total", source="github", outcome="backlog_full")
        body, headers = push(99)
        answer = client.post("/hooks/github", content=body, headers=headers)
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "30"
        assert "max_backlog" in answer.json()["error"]
        assert redis_client.llen(QUEUE_KEY) == 10 and redis_client.zcard("shipline:events") == 10
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["backlog"] == 10 and "backlog" in ready.json()["reason"]
        assert metric(client, "shipline_deliveries_total", source="github", outcome="backlog_full") \
            == refused_before + 1
        assert metric(client, "shipline_backlog_events") == 10
        shown = client.get("/api/queues", headers={"Authorization": "Bearer api-token-for-tests"}).json()
        assert (shown["backlog"], shown["max_backlog"], shown["refused"]) == (10, 10, 1)
        assert shown["queues"]["events"] == {"ready": 10, "delayed": 0}
        EventStore(redis_client).set_status(ids[0], "done", "ok")  # the workers catch up by one
        again = client.post("/hooks/github", content=body, headers=headers)  # the sender's retry
        assert again.status_code == 202
        assert client.get("/readyz").status_code == 503  # at the cap again
        duplicate = client.post("/hooks/github", content=push(3)[0], headers=push(3)[1])
        assert duplicate.status_code == 200, "a duplicate is still recognised while refusing"


@pytest.mark.parametrize(("setting", "value"), [("appendfsync", "everysec"), ("maxmemory-policy", "allkeys-lru"),
                                                ("appendonly", "no")])
def test_the_receiver_refuses_to_start_on_a_redis_that_can_lose_writes(tmp_path: Path, setting: str,
                                                                       value: str) -> None:
    own = RedisServer(tmp_path / "redis", free_port())
    own.start()
    try:
        redis.Redis.from_url(own.url).config_set(setting, value)
        with pytest.raises(ConfigError) as refused, TestClient(app_with(tmp_path, own.url)):
            pass
        assert f"{setting} is '{value}'" in str(refused.value) and "CONFIG SET" in str(refused.value)
        assert "redis.durability: relaxed" in str(refused.value)
        with TestClient(app_with(tmp_path, own.url, durability="relaxed")) as client:
            assert client.post("/hooks/github", content=push(1)[0], headers=push(1)[1]).status_code == 202
    finally:
        own.stop()


def test_serve_with_two_workers_shares_one_port_and_merges_metrics(tmp_path: Path, stack: Stack,
                                                                     redis_client) -> None:
    import subprocess
    import sys
    import time

    import httpx

    from devstack.process import wait_until

    port = free_port()
    cfg = make_config(tmp_path, stack.redis.url)
    path = tmp_path / "shipline.yaml"
    data = json.loads(cfg.model_dump_json())
    data["server"]["port"] = port
    path.write_text(json.dumps(data))
    server = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--workers", "2", "--config", str(path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _ready(url), timeout=60, what="shipline serve --workers 2")
        children = subprocess.run(["pgrep", "-P", str(server.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) >= 2, "two receiver processes (plus uvicorn's supervisor)"
        with httpx.Client(base_url=url, timeout=10) as http:  # fresh connections spread over both processes
            statuses = [http.post("/hooks/github", content=push(n)[0], headers={**push(n)[1], "Connection": "close"})
                        .status_code for n in range(40)]
            assert statuses == [202] * 40
            time.sleep(0.5)
            families = text_string_to_metric_families(http.get("/metrics").text)
            accepted = sum(s.value for f in families for s in f.samples
                           if s.name == "shipline_deliveries_total" and s.labels.get("outcome") == "accepted")
        assert accepted == 40, "whichever process answers the scrape counts every process's deliveries"
        assert redis_client.llen(QUEUE_KEY) == 40
    finally:
        import os
        import signal

        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def _ready(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
