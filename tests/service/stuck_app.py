"""A dramatiq app for ``test_stuckwatch``, run by ``python -m dramatiq``: Shipline's broker with
``StuckWatch``, an actor that blocks in a system call past its time limit (``TimeLimit`` cannot
interrupt it), one that spins in Python (``TimeLimit`` can), and one that just records."""

from __future__ import annotations

import os
import time
from typing import Any

import dramatiq
import redis

from service.broker import make_broker
from service.stuckwatch import StuckWatch

QUEUE = "stuck-test"
URL = os.environ["STUCK_TEST_REDIS_URL"]
client = redis.Redis.from_url(URL)
broker = make_broker(URL)
broker.heartbeat_timeout = 2_000  # the dead process's messages come back in seconds, not 15


def given_up(message: Any, error: BaseException) -> None:
    client.rpush("stuck-test:given-up", f"{message.actor_name} {list(message.args)}: {error}")


broker.add_middleware(StuckWatch(on_give_up=given_up, grace_seconds=1.0))
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=QUEUE, actor_name="hang", time_limit=500, max_retries=0)
def hang(tag: str) -> None:
    client.rpush("stuck-test:started", tag)
    time.sleep(3600)


@dramatiq.actor(queue_name=QUEUE, actor_name="spin", time_limit=500, max_retries=0)
def spin(tag: str) -> None:
    client.rpush("stuck-test:started", tag)
    while True:
        pass


@dramatiq.actor(queue_name=QUEUE, actor_name="record", max_retries=0)
def record(tag: str) -> None:
    client.rpush("stuck-test:done", tag)
