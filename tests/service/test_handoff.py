"""The receiver's hand-off to Redis, group-committed: deliveries that arrive together leave as one
pipeline, yet each is its own atomic call with its own verdict, and the queue message is exactly
what dramatiq's worker reads."""

from __future__ import annotations

import asyncio

import dramatiq
import pytest

from devstack.stack import Stack
from service.broker import NAMESPACE, QUEUE_EVENTS
from service.ingest import encode_for_queue
from service.store import AsyncEventLog, EventRecord, EventStore, Retention

QUEUE_KEY = f"{NAMESPACE}:{QUEUE_EVENTS}"
STEP = {"stage": "delivery", "status": "accepted", "detail": "test"}


def record(n: int) -> EventRecord:
    return EventRecord(id=f"ev-{n:04d}", source="github", receiver="default", kind="git_pushed", event={"n": n})


async def accept_all(url: str, keys_of: list[list[str]], *, flush_after: int | None = None) -> list[tuple[str, str]]:
    log = AsyncEventLog(url, Retention())
    try:
        async def one(n: int, keys: list[str]) -> tuple[str, str]:
            if n == flush_after:
                await log.client.script_flush()  # as after a Redis restart: the script is gone
            verdict = await log.accept(record(n), keys, encode_for_queue(f"ev-{n:04d}"), STEP)
            return verdict.verdict, verdict.value

        return list(await asyncio.gather(*(one(n, keys) for n, keys in enumerate(keys_of))))
    finally:
        await log.aclose()


def test_deliveries_arriving_together_each_get_their_own_verdict(stack: Stack, redis_client) -> None:
    keys = [[f"sem:{n}"] for n in range(200)]
    keys[150] = ["sem:7"]  # a duplicate of an earlier one in the same burst
    verdicts = asyncio.run(accept_all(stack.redis.url, keys))
    assert verdicts[150] == ("duplicate", "ev-0007")
    assert [v for n, (v, _) in enumerate(verdicts) if n != 150] == ["accepted"] * 199
    assert redis_client.llen(QUEUE_KEY) == 199
    assert EventStore(redis_client).get("ev-0150") is None, "a duplicate leaves no record"
    assert max(int(value) for v, value in verdicts if v == "accepted") == 199, "backlog counted per call"


def test_a_lost_script_is_loaded_again_and_nothing_runs_twice(stack: Stack, redis_client) -> None:
    keys = [[f"sem:{n}"] for n in range(100)]
    verdicts = asyncio.run(accept_all(stack.redis.url, keys, flush_after=40))
    assert [v for v, _ in verdicts] == ["accepted"] * 100
    assert redis_client.llen(QUEUE_KEY) == 100
    assert redis_client.zcard("shipline:events") == 100


def test_a_redis_error_reaches_every_waiting_delivery(tmp_path) -> None:
    log = AsyncEventLog("redis://127.0.0.1:1/0", Retention())  # nothing listens on port 1

    async def both() -> list[BaseException | object]:
        calls = [log.accept(record(n), [f"sem:{n}"], encode_for_queue(f"ev-{n}"), STEP) for n in range(3)]
        return await asyncio.gather(*calls, return_exceptions=True)

    import redis

    answers = asyncio.run(both())
    assert all(isinstance(a, (redis.ConnectionError, OSError)) for a in answers), answers


@pytest.mark.parametrize("event_id", ["ev-0001", "01JD0000000000000000000000"])
def test_the_queued_message_is_what_dramatiq_decodes(event_id: str) -> None:
    queued = encode_for_queue(event_id)
    message = dramatiq.Message.decode(queued.data)
    assert (message.queue_name, message.actor_name, tuple(message.args), message.kwargs) == (
        QUEUE_EVENTS, "process_event", (event_id,), {})
    assert message.options == {"redis_message_id": queued.id}
    assert queued.queue_key == QUEUE_KEY
    assert message.message_id != queued.id and len(message.message_id) == 36
    assert encode_for_queue(event_id).id != queued.id, "every hand-off gets its own queue id"
