"""The receiver's promise under faults: a 2xx answer means durable. Redis killed (``kill -9``,
AOF fsync always) under a stream of deliveries: the receiver answers 503 while it is down and
every delivery answered 2xx is processed afterwards. The receiver killed under load: senders
retry, as real ones do, and no 2xx delivery is lost."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable

import httpx

from devstack.process import StackError
from service.broker import NAMESPACE, QUEUE_EVENTS, REDELIVERY_BOUND_SECONDS
from tests.chaos.results import record
from tests.chaos.world import World, post, wait_for


def stream(world: World, count: int, senders: int, fault: Callable[[], None], after: int) -> dict[str, object]:
    """Send ``count`` distinct sync-only deliveries from ``senders`` threads, running ``fault``
    once ``after`` of them were answered; every delivery is retried until it gets a 2xx."""
    deliveries = [world.gitea_push(world.deploy_name, uuid.uuid4().hex + uuid.uuid4().hex[:8])
                  for _ in range(count)]
    answers: list[tuple[int, int, dict]] = []
    statuses: list[int] = []
    lock = threading.Lock()
    fired = threading.Event()

    def send(mine: list[tuple[bytes, dict[str, str]]]) -> None:
        with httpx.Client(timeout=10) as client:
            for body, headers in mine:
                result = post(f"{world.url}/hooks/gitea", body, headers, attempts=600, client=client,
                              seen=statuses)
                with lock:
                    answers.append(result)
                    if len(answers) >= after and not fired.is_set():
                        fired.set()

    threads = [threading.Thread(target=send, args=(deliveries[i::senders],)) for i in range(senders)]
    for t in threads:
        t.start()
    fired.wait(timeout=60)
    fault()
    for t in threads:
        t.join(timeout=120)
    return {"answers": answers, "sent": sum(a[0] for a in answers), "statuses": statuses}


def processed(world: World, event_ids: set[str], timeout: float = 120) -> tuple[int, int, int]:
    """(processed, lost, duplicated) of these accepted events: exactly one sync step each."""
    wait_for(lambda: all(world.steps(e, "sync") for e in event_ids), timeout=timeout,
             what="every accepted delivery synced", log=world.daemon("worker").log_file)
    time.sleep(2)
    syncs = {e: world.syncs(e) for e in event_ids}  # (environments, extra syncs)
    return (sum(1 for n, _ in syncs.values() if n >= 1), sum(1 for n, _ in syncs.values() if n == 0),
            sum(x for _, x in syncs.values()))


def orphaned(world: World, event_ids: set[str]) -> set[str]:
    """Accepted events still unprocessed after 60 s whose message sits in a *live* worker's ack set.

    dramatiq (2.2) limitation: when Redis dies while a consumer's ``fetch`` is in flight (or with
    messages prefetched), the consumer restarts with an empty cache but the message ids stay in the
    ack set of its still-alive worker: no sweep requeues them until that worker process restarts
    (then heartbeat + sweep, as after a ``kill -9``).
    """
    with contextlib.suppress(StackError):
        wait_for(lambda: all(world.steps(e, "sync") for e in event_ids), timeout=60, what="all synced")
    stuck = {e for e in event_ids if not world.steps(e, "sync")}
    if not stuck:
        return set()
    held = {m for members in world.unacked(QUEUE_EVENTS).values() for m in members}
    messages = {json.loads(world.r.hget(f"{NAMESPACE}:{QUEUE_EVENTS}.msgs", m) or "{}").get("args", [""])[0]
                for m in held}
    assert stuck <= messages, (stuck, messages)  # anything else would be a real loss
    return stuck


def accepted_ids(answers: list[tuple[int, int, dict]]) -> set[str]:
    return {a[2].get("event_id") or a[2]["duplicate"] for a in answers if 200 <= a[1] < 300}


def test_redis_killed_under_a_stream_loses_no_accepted_delivery(world: World) -> None:
    def outage() -> None:
        world.redis.daemon.kill()
        time.sleep(3)
        world.redis.start()

    result = stream(world, 150, 4, outage, after=50)
    answers = result["answers"]
    ids = accepted_ids(answers)
    orphans = orphaned(world, ids)
    if orphans:  # dramatiq limitation, see orphaned(): recovered by restarting the worker
        world.daemon("worker").kill()
        world.start_worker()
    done, lost, dup = processed(world, ids, timeout=120 + REDELIVERY_BOUND_SECONDS)
    unavailable = result["statuses"].count(503)
    note = f"{unavailable} answers 503 while Redis was down"
    if orphans:
        note += f"; {len(orphans)} stranded in the live worker's ack set, recovered by a worker restart"
    record("redis kill -9 + restart under a stream", sent=result["sent"], accepted=len(ids), processed=done,
           lost=lost + (150 - len(ids)), duplicated=dup + (len(ids) - 150 if len(ids) > 150 else 0), note=note)
    assert len(answers) == 150 and all(200 <= a[1] < 300 for a in answers)
    assert unavailable > 0, sorted(set(result["statuses"]))
    assert (len(ids), lost, dup) == (150, 0, 0)


def test_receiver_killed_under_load_loses_no_accepted_delivery(world: World) -> None:
    def crash() -> None:
        world.daemon("serve").kill()
        world.start_serve()

    result = stream(world, 300, 8, crash, after=100)
    answers = result["answers"]
    ids = accepted_ids(answers)
    done, lost, dup = processed(world, ids)
    record("receiver kill -9 + restart under load", sent=result["sent"], accepted=len(ids), processed=done,
           lost=lost + (300 - len(ids)), duplicated=dup + max(0, len(ids) - 300),
           note=f"{result['sent'] - 300} resent after connection errors")
    assert len(answers) == 300 and all(200 <= a[1] < 300 for a in answers)
    assert (len(ids), lost, dup) == (300, 0, 0)
