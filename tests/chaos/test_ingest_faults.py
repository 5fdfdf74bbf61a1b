"""The receiver's promise under faults: a 2xx answer means durable. Redis killed (``kill -9``,
AOF fsync always) under a stream of deliveries: the receiver answers 503 while it is down, and
every accepted delivery is processed afterwards by the *same* worker processes (a message whose
fetch reply died with Redis is requeued by the worker on reconnect, ``RecoveringRedisBroker``).
The receiver killed under load: senders retry, as real ones do, and nothing accepted is lost,
including what the receiver recorded for a delivery whose answer never arrived."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from service.broker import RECONNECT_REQUEUE_BOUND_SECONDS, REDELIVERY_BOUND_SECONDS
from tests.chaos.scenario import Run, scenario
from tests.chaos.senders import send_all
from tests.chaos.world import World

STREAM_SOURCES = {"sent": "distinct signed Gitea pushes to the manifests repo, posted by 4-8 sender threads "
                          "retrying connection errors and 5xx"}


def stream(world: World, run: Run, count: int, senders: int, fault: Callable[[], None], after: int) -> list[tuple]:
    """Send ``count`` distinct sync-only deliveries, running ``fault`` (in this thread) once ``after``
    of them were answered; every delivery is retried until it gets a non-5xx answer."""
    reached = threading.Event()
    answers: list[tuple] = []

    def send() -> None:
        answers.extend(send_all(world.url, world.sync_only_pushes(count), run.ledger, senders=senders,
                                on_answer=lambda n: reached.set() if n >= after else None))

    sender = threading.Thread(target=send)
    sender.start()
    reached.wait(timeout=120)
    fault()
    sender.join(timeout=600)
    return answers


def stranded_requeues(world: World, since: float) -> list[dict]:
    """The worker's 'requeued N stranded message(s)' log lines after ``since`` (wall clock)."""
    return [line for line in world.log_lines("worker")
            if "stranded" in str(line.get("msg", "")) and float(line.get("at", 0)) >= since]


def test_redis_killed_under_a_stream_loses_nothing_and_the_worker_recovers_alone(world: World) -> None:
    workers = world.worker_pids()
    back: list[float] = []

    def outage() -> None:
        world.redis.daemon.kill()
        time.sleep(3)
        world.redis.start()
        back.append(time.time())
        run.fault_over()

    with scenario(world, "redis kill -9 + restart under a stream") as run:
        answers = stream(world, run, 150, 4, outage, after=50)
        requeued = stranded_requeues(world, back[0])
        took = max((float(line["at"]) - back[0] for line in requeued), default=0.0)
        unavailable = run.ledger.statuses.count(503) + run.ledger.statuses.count(0)
        stranded = sum(int(line.get("requeued", 0)) for line in requeued)
        strand = (f"{stranded} stranded message(s) requeued on reconnect, {took:.1f}s after Redis was back"
                  if stranded else "no message stranded")
        row = run.conclude(timeout=120 + REDELIVERY_BOUND_SECONDS, sources=STREAM_SOURCES,
                           note=f"{unavailable} answers 503/refused while Redis was down; worker not "
                                f"restarted; {strand}")
    assert len(answers) == 150 and all(200 <= a[0] < 300 for a in answers)
    assert unavailable > 0, sorted(set(run.ledger.statuses))
    assert (row.accepted, row.lost, row.duplicated) == (150, 0, 0), row
    assert world.worker_pids() == workers, "the worker was restarted"
    assert took <= RECONNECT_REQUEUE_BOUND_SECONDS, requeued


def test_receiver_killed_under_load_loses_no_accepted_delivery(world: World) -> None:
    def crash() -> None:
        world.daemon("serve").kill()
        world.start_serve()
        run.fault_over()

    with scenario(world, "receiver kill -9 + restart under load") as run:
        answers = stream(world, run, 300, 8, crash, after=100)
        row = run.conclude(timeout=180, sources=STREAM_SOURCES,
                           note=f"{run.ledger.requests - run.ledger.deliveries} requests resent after errors")
    assert len(answers) == 300 and all(200 <= a[0] < 300 for a in answers)
    assert (row.accepted, row.lost, row.duplicated) == (300, 0, 0), row
