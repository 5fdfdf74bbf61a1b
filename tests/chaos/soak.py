"""``make soak``: a long run at a steady rate with faults on a clock, counted from outside.

Deliveries of mixed sources (Gitea and GitHub pushes to the manifests repo: syncs; registry
notifications for the fleet images with ever newer tags: bumps, commits, syncs; a real app push
now and then: build, bump, sync) arrive at ``SHIPLINE_SOAK_RATE`` per second for
``SHIPLINE_SOAK_MINUTES``, handled by ``SHIPLINE_SOAK_WORKERS`` workers of
``SHIPLINE_SOAK_THREADS`` threads, one of which is killed (``kill -9``, restarted at once) every
``SHIPLINE_SOAK_KILL_EVERY`` seconds, in turn, while Redis is killed and restarted every
``SHIPLINE_SOAK_REDIS_EVERY`` seconds. Then the traffic stops and every accepted id must reach a
final state within ``DRAIN_SECONDS``. Same columns as the chaos table, plus the receiver's and the
workers' resident memory at start and end (``RSS_GROWTH_BOUND_MB``).

Accepted ids are checked while the run goes (every ``POLL_SECONDS``), because retention trims the
oldest finished records: a record trimmed before it was seen final counts as lost.
Not collected by ``make test`` (the name does not match ``test_*.py``).
"""

from __future__ import annotations

import os
import queue
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from service.store import FINAL_STATUSES
from tests.chaos import evidence
from tests.chaos.results import Row, record
from tests.chaos.senders import Delivery, delivery_id, fake_sha, post
from tests.chaos.world import World, fake_digest, wait_for

MINUTES = float(os.environ.get("SHIPLINE_SOAK_MINUTES", "30"))
RATE = float(os.environ.get("SHIPLINE_SOAK_RATE", "50"))
KILL_EVERY = float(os.environ.get("SHIPLINE_SOAK_KILL_EVERY", "120"))
REDIS_EVERY = float(os.environ.get("SHIPLINE_SOAK_REDIS_EVERY", "600"))
APP_PUSH_EVERY = float(os.environ.get("SHIPLINE_SOAK_APP_PUSH_EVERY", "90"))
SENDERS = 24
POLL_SECONDS = 5.0
APP_PUSH_RECORDED = 30.0
"""An app push's webhook is recorded within this; no app push starts closer to a Redis restart."""
REDIS_SETTLE_SECONDS = 30.0
"""No app push for this long after Redis is back (its AOF loads, the receiver reconnects)."""
DRAIN_SECONDS = 900.0
WARM_UP_SECONDS = 60.0
"""Memory at start is read after this much traffic (imports, pools and caches filled)."""
RSS_GROWTH_BOUND_MB = 64.0
"""Receiver: over the whole run; a worker: over one life (from warm to its kill, or the end)."""
WORKERS = int(os.environ.get("SHIPLINE_SOAK_WORKERS", "2"))
THREADS = int(os.environ.get("SHIPLINE_SOAK_THREADS", "8"))
"""One worker of 4 threads does ~13 deliveries/s of this mix (measured): 50/s needs more."""
MIX = (("gitea", 0.45), ("github", 0.45), ("registry", 0.10))
SOAK_SOURCES = {
    "sent": "deliveries posted by 24 sender threads at a fixed rate (45% Gitea, 45% GitHub pushes to the "
            "manifests repo, 10% registry notifications) + real app pushes",
    "accepted": "event ids in the receiver's 2xx answers, and the receiver's record of each real app push",
    "processed": "statuses polled from Redis every 5 s during the run (a record trimmed before it was seen "
                 "final counts as lost)",
    "recovery_s": "end of traffic -> the last accepted id processed",
}


def rss_mb(pids: set[int]) -> float:
    total = 0
    for pid in pids:
        try:
            lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        except OSError:
            continue
        total += next((int(x.split()[1]) for x in lines if x.startswith("VmRSS:")), 0)
    return round(total / 1024, 1)


@dataclass
class Outstanding:
    """Accepted ids not yet seen in a final state; polled while the run goes."""

    world: World
    pending: set[str] = field(default_factory=set)
    final: set[str] = field(default_factory=set)
    statuses: Counter[str] = field(default_factory=Counter)
    """Final statuses as first seen (a ``failed`` event is final, but worth a look)."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, event_id: str) -> None:
        with self.lock:
            if event_id not in self.final:
                self.pending.add(event_id)

    def poll(self) -> None:
        with self.lock:
            ids = set(self.pending)
        done: set[str] = set()
        finals: list[str] = []
        chunk = sorted(ids)
        for start in range(0, len(chunk), 5000):
            try:
                state = evidence.statuses(self.world.r, set(chunk[start:start + 5000]))
            except Exception:  # noqa: BLE001 - Redis is being restarted: next poll
                return
            done |= {i for i, s in state.items() if s in FINAL_STATUSES}
            finals += [s for s in state.values() if s in FINAL_STATUSES]
        with self.lock:
            self.statuses.update(finals)
            self.pending -= done
            self.final |= done


class Traffic:
    """Deliveries at ``RATE`` per second from ``SENDERS`` threads, each retried like a real sender."""

    def __init__(self, world: World, ledger: evidence.Ledger, outstanding: Outstanding) -> None:
        self.world, self.ledger, self.outstanding = world, ledger, outstanding
        self.todo: queue.Queue[Delivery | None] = queue.Queue()
        self.rng = random.Random(18)  # noqa: S311 - a reproducible mix
        self.tag = 0
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._send, daemon=True) for _ in range(SENDERS)]
        self.clock = threading.Thread(target=self._schedule, daemon=True)

    def start(self) -> None:
        for t in (*self.threads, self.clock):
            t.start()

    def finish(self) -> None:
        self.stop.set()
        self.clock.join()
        for _ in self.threads:
            self.todo.put(None)
        for t in self.threads:
            t.join(timeout=600)

    def _next(self) -> Delivery:
        kind = self.rng.choices([k for k, _ in MIX], [w for _, w in MIX])[0]
        if kind == "gitea":
            return self.world.gitea_push(self.world.deploy_name, fake_sha())
        if kind == "github":
            return self.world.github_push(self.world.deploy_name, fake_sha())
        self.tag += 1
        image = self.rng.choice(self.world.fleet_images)
        return self.world.registry_push(f"2.0.{self.tag}", fake_digest(f"{image}:{self.tag}"), image)

    def _schedule(self) -> None:
        began = time.monotonic()
        sent = 0
        while not self.stop.is_set():
            due = int((time.monotonic() - began) * RATE)
            for _ in range(due - sent):
                delivery = self._next()
                self.ledger.sent(delivery_id(delivery))
                self.todo.put(delivery)
            sent = max(sent, due)
            time.sleep(0.02)

    def _send(self) -> None:
        with httpx.Client(timeout=10) as client:
            while (delivery := self.todo.get()) is not None:
                status, answer = post(self.world.url, delivery, ledger=self.ledger, client=client, attempts=10_000)
                event_id = answer.get("event_id") or answer.get("duplicate")
                if 200 <= status < 300 and event_id:
                    self.outstanding.add(str(event_id))


def app_push(world: World, ledger: evidence.Ledger, since: float) -> str:
    """A real push to the app repo (build, bump, sync); the id the receiver recorded for it."""
    sha = world.push_app()
    ledger.pushed(sha)
    wait_for(lambda: world.record_for_sha(sha, since), timeout=APP_PUSH_RECORDED, what="the app push recorded")
    found = world.record_for_sha(sha, since)
    assert found is not None
    return found.id


@dataclass
class Life:
    name: str
    started: float
    warm_mb: float = 0.0


class Workers:
    """The soak's worker processes, killed in turn (``kill -9``, restarted at once); their memory
    is read per life: once warm (``WARM_UP_SECONDS`` after start, at most half the run) and at
    its end."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.names = ["worker", *(f"worker{i}" for i in range(2, WORKERS + 1))]
        self.lives: dict[str, Life] = {}
        self.growth: list[float] = []
        self.kills = 0
        self.warm_after = min(WARM_UP_SECONDS, MINUTES * 30)

    def start(self) -> None:
        for name in self.names:
            self.world.daemon(name).stop()
            self._launch(name)
        for name in self.names:
            self.world.wait_worker_ready(name)

    def _launch(self, name: str) -> None:
        self.world.start_worker(name, threads=THREADS)
        self.lives[name] = Life(name, time.monotonic())

    def rss(self, name: str) -> float:
        return rss_mb(self.world.worker_pids(name))

    def tick(self) -> None:
        for life in self.lives.values():
            if not life.warm_mb and time.monotonic() - life.started >= self.warm_after:
                life.warm_mb = self.rss(life.name)

    def kill_next(self) -> None:
        name = self.names[self.kills % len(self.names)]
        self._end_life(name)
        self.world.daemon(name).kill()
        self._launch(name)
        self.kills += 1

    def _end_life(self, name: str) -> None:
        life = self.lives[name]
        if life.warm_mb:
            self.growth.append(round(self.rss(name) - life.warm_mb, 1))

    def finish(self) -> float:
        """Total RSS now; every life still running ends here."""
        for name in self.names:
            self._end_life(name)
        return round(sum(self.rss(name) for name in self.names), 1)

    def stop(self) -> None:
        for name in self.names[1:]:
            self.world.daemon(name).stop()
        self.world.daemon("worker").stop()
        self.world.start_worker()


@pytest.mark.timeout(int(MINUTES * 60 + DRAIN_SECONDS + 900))
def test_soak(world: World) -> None:
    ledger, outstanding = evidence.Ledger(), Outstanding(world)
    workers = Workers(world)
    workers.start()
    baseline = world.baseline()
    traffic = Traffic(world, ledger, outstanding)
    began = time.monotonic()
    restarts = pushes = 0
    receiver_start = workers_start = 0.0
    redis_back = float("-inf")
    next_kill, next_redis, next_push, next_poll = KILL_EVERY, REDIS_EVERY, APP_PUSH_EVERY / 2, POLL_SECONDS
    traffic.start()
    while (elapsed := time.monotonic() - began) < MINUTES * 60:
        time.sleep(0.5)
        workers.tick()
        if not receiver_start and elapsed >= workers.warm_after:
            receiver_start = rss_mb({world.daemon("serve").pid() or 0})
            workers_start = round(sum(workers.rss(name) for name in workers.names), 1)
        if elapsed >= next_kill:
            workers.kill_next()
            next_kill += KILL_EVERY
        if elapsed >= next_redis:
            world.redis.daemon.kill()
            time.sleep(2)
            world.redis.start()
            restarts, next_redis = restarts + 1, next_redis + REDIS_EVERY
            redis_back = time.monotonic() - began
        # Gitea sends an app push's webhook once and never again: not while Redis is down or
        # loading (the receiver answers 503, rightly), which a push just after a restart hit
        if elapsed >= next_push and next_redis - elapsed > APP_PUSH_RECORDED + 10 \
                and elapsed - redis_back > REDIS_SETTLE_SECONDS:
            outstanding.add(app_push(world, ledger, baseline.started))
            pushes, next_push = pushes + 1, next_push + APP_PUSH_EVERY
        if elapsed >= next_poll:
            outstanding.poll()
            next_poll += POLL_SECONDS
    traffic.finish()
    stopped = time.monotonic()
    load_seconds = stopped - began
    drained_at = None
    while time.monotonic() - stopped < DRAIN_SECONDS:
        outstanding.poll()
        if not outstanding.pending:
            drained_at = time.monotonic()
            break
        time.sleep(POLL_SECONDS)
    time.sleep(5)
    receiver_end = rss_mb({world.daemon("serve").pid() or 0})
    workers_end = workers.finish()
    workers.stop()
    accepted = outstanding.final | outstanding.pending
    dup = world.duplicates(baseline, accepted)
    rate = ledger.deliveries / load_seconds
    worst = max(workers.growth, default=0.0)
    note = (f"{MINUTES:g} min at {rate:.1f}/s; {WORKERS} workers x {THREADS} threads, {workers.kills} kills, "
            f"{restarts} Redis restarts, {pushes} app pushes; RSS MB receiver {receiver_start}->{receiver_end}, "
            f"workers {workers_start}->{workers_end} (most growth in one life {worst}); final statuses "
            f"{dict(sorted(outstanding.statuses.items()))}; {dup.note()}")
    row = record(Row(f"soak {MINUTES:g} min @ {RATE:g}/s", sent=ledger.deliveries, accepted=len(accepted),
                     processed=len(outstanding.final), lost=len(outstanding.pending), duplicated=dup.total,
                     recovery_s=round(drained_at - stopped, 1) if drained_at else None, note=note,
                     evidence=SOAK_SOURCES))
    assert (row.lost, row.duplicated) == (0, 0), row
    assert receiver_end - receiver_start <= RSS_GROWTH_BOUND_MB, (receiver_start, receiver_end)
    assert worst <= RSS_GROWTH_BOUND_MB, workers.growth
