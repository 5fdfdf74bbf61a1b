"""The worker's broker through a real network fault (toxiproxy in front of the stack's Redis):
a fetch whose reply was lost, a delayed message dropped with its consumer, and a partition that
times commands out all end with the message processed once, by the still-running worker, within
``RECONNECT_REQUEUE_BOUND_SECONDS`` of Redis answering again. Stock dramatiq 2.2 leaves the first
two in the worker's ack set until the process restarts, and drops the third's ack. Also the
cheap toxiproxy check of ``make test`` (the network-fault scenarios themselves are ``make chaos``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import dramatiq
import pytest
import redis
from dramatiq import Worker

from devstack.process import free_port, wait_until
from devstack.stack import Stack
from devstack.toxiproxy import Proxy, Toxiproxy
from service.broker import NAMESPACE, RECONNECT_REQUEUE_BOUND_SECONDS, RecoveringRedisBroker, make_broker


@pytest.fixture(scope="module")
def toxiproxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Toxiproxy]:
    server = Toxiproxy(tmp_path_factory.mktemp("toxiproxy"), free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def proxy(toxiproxy: Toxiproxy, stack: Stack, redis_client: redis.Redis) -> Iterator[Proxy]:
    link = toxiproxy.proxy("redis", stack.redis.port)
    yield link
    link.clear()


class Running:
    """A dramatiq worker (one thread) on a broker that reaches Redis through ``proxy``."""

    def __init__(self, proxy: Proxy, actor_sleep: float = 0.0) -> None:
        self.broker = make_broker(f"redis://127.0.0.1:{proxy.port}/0")
        self.done: list[str] = []
        self.event = threading.Event()

        @dramatiq.actor(broker=self.broker, queue_name="events", actor_name="record", max_retries=0)
        def record(value: str) -> None:
            time.sleep(actor_sleep)
            self.done.append(value)
            self.event.set()

        self.actor = record
        self.worker = Worker(self.broker, worker_threads=1, worker_timeout=100)

    def __enter__(self) -> Running:
        self.worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.worker.stop(timeout=5000)
        self.broker.close()

    def acks(self, r: redis.Redis, queue: str = "events") -> set[str]:
        return r.smembers(f"{NAMESPACE}:__acks__.{self.broker.broker_id}.{queue}")


def beside(worker: RecoveringRedisBroker, stack: Stack) -> RecoveringRedisBroker:
    """A broker straight to Redis that speaks as ``worker`` (same broker id)."""
    direct = make_broker(stack.redis.url)
    direct.broker_id = worker.broker_id
    return direct


def test_a_fetch_whose_reply_was_lost_is_requeued_when_the_worker_reconnects(
        proxy: Proxy, stack: Stack, redis_client: redis.Redis) -> None:
    with Running(proxy) as running:
        wait_until(lambda: running.broker.client.zscore(f"{NAMESPACE}:__heartbeats__", running.broker.broker_id),
                   timeout=10, what="the worker polling")
        proxy.set_enabled(False)
        direct = beside(running.broker, stack)
        direct.enqueue(running.actor.message("lost reply"))
        fetched = direct.do_fetch("events", 1)  # Redis moved it into the worker's ack set; the reply never came
        assert len(fetched) == 1 and len(running.acks(redis_client)) == 1
        time.sleep(2)
        assert running.done == []
        proxy.set_enabled(True)
        back = time.monotonic()
        assert running.event.wait(RECONNECT_REQUEUE_BOUND_SECONDS + 5), "the stranded message stayed stranded"
        took = time.monotonic() - back
    assert running.done == ["lost reply"] and took <= RECONNECT_REQUEUE_BOUND_SECONDS, took
    assert not running.acks(redis_client)


def test_a_delayed_message_dropped_with_its_consumer_comes_back(
        proxy: Proxy, stack: Stack, redis_client: redis.Redis) -> None:
    with Running(proxy) as running:
        running.actor.send_with_options(args=("delayed",), delay=4000)
        wait_until(lambda: running.acks(redis_client, "events.DQ"), timeout=10, what="the delay consumer holding it")
        proxy.set_enabled(False)  # dramatiq's consumer thread drops its in-memory delay queue
        time.sleep(1)
        proxy.set_enabled(True)
        assert running.event.wait(4 + RECONNECT_REQUEUE_BOUND_SECONDS + 5), "the delayed message was lost"
    assert running.done == ["delayed"]
    assert not running.acks(redis_client, "events.DQ") and not running.acks(redis_client)


def test_a_partition_during_processing_ends_with_one_ack_not_a_stranded_message(
        proxy: Proxy, stack: Stack, redis_client: redis.Redis) -> None:
    with Running(proxy, actor_sleep=2) as running:
        running.actor.send("partitioned")
        wait_until(lambda: running.acks(redis_client), timeout=10, what="the message fetched")
        with proxy.toxic("timeout", stream="upstream", timeout=0), \
                proxy.toxic("timeout", stream="downstream", timeout=0):
            time.sleep(8)  # past the socket timeout: the ack times out instead of hanging
        wait_until(lambda: not running.acks(redis_client), timeout=RECONNECT_REQUEUE_BOUND_SECONDS + 10,
                   what="the ack after the partition")
        time.sleep(1)
    assert running.done == ["partitioned"]
    assert redis_client.llen(f"{NAMESPACE}:events") == 0


def test_toxiproxy_itself_adds_latency_and_black_holes_connections(proxy: Proxy) -> None:
    """The component every network-fault scenario of ``make chaos`` relies on, exercised in CI."""
    client = redis.Redis.from_url(f"redis://127.0.0.1:{proxy.port}/0", socket_timeout=1)  # no retries
    assert client.ping()
    with proxy.toxic("latency", latency=300):
        began = time.monotonic()
        assert client.ping()
        assert time.monotonic() - began >= 0.3
    with proxy.toxic("timeout", timeout=0), pytest.raises(redis.TimeoutError):
        client.ping()
    client.connection_pool.disconnect()
    assert client.ping()
