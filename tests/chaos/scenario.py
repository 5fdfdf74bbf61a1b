"""A fault scenario's bookkeeping: a baseline before the fault, then one row counted from outside.

``with scenario(world, name) as run:`` takes the baseline and gives a ``Ledger`` for the senders;
``run.fault_over()`` marks the end of the fault; ``run.conclude(timeout=...)`` waits until every
accepted id is processed (or the deadline passes: the rest are lost), looks for duplicated work and
records the row. If the scenario raises before concluding, the row is still written (everything
not processed by then counted lost) and the error propagates: no scenario ends without its row.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tests.chaos import evidence
from tests.chaos.results import Row, record

if TYPE_CHECKING:
    from tests.chaos.world import World

SETTLE_SECONDS = 3.0
"""After everything is processed, how long a duplicate gets to show up before it is counted."""


@dataclass
class Run:
    world: World
    name: str
    baseline: evidence.Baseline
    ledger: evidence.Ledger = field(default_factory=evidence.Ledger)
    fault_ended: float | None = None
    """``time.monotonic()`` when the fault stopped."""
    row: Row | None = None
    batch: evidence.Accepted | None = None

    def fault_over(self) -> None:
        self.fault_ended = time.monotonic()

    def conclude(self, *, timeout: float, landed: Callable[[evidence.Accepted], bool] | None = None,
                 note: str = "", sources: dict[str, str] | None = None) -> Row:
        """Wait up to ``timeout`` for every accepted id to be processed and, when given, for
        ``landed`` (the effect seen outside, e.g. the cluster at the bump's revision); then count.

        Without ``landed`` an id counts as processed when its records are final; with it, nothing
        counts as processed until the effect is there (single-release scenarios)."""
        world = self.world
        deadline = time.monotonic() + timeout
        done_at = None
        while True:
            batch = evidence.accepted(world.r, self.ledger, self.baseline.started)
            left = evidence.unfinished(world.r, batch)
            effect = landed is None or (not left and _safe(landed, batch))
            if not left and effect:
                done_at = time.monotonic()
                break
            if time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        time.sleep(SETTLE_SECONDS if done_at else 0)
        batch = evidence.accepted(world.r, self.ledger, self.baseline.started)
        left = evidence.unfinished(world.r, batch)
        lost = len(batch.ids) if landed is not None and done_at is None else len(left)
        events = set(batch.ids).union(*batch.follow_ups.values()) if batch.follow_ups else set(batch.ids)
        dup = world.duplicates(self.baseline, events)
        began = self.fault_ended
        recovery = round(max(0.0, done_at - began), 1) if done_at is not None and began is not None else None
        extra = [note] if note else []
        if batch.unanswered:
            extra.append(f"{batch.unanswered} recorded without an answer")
        if done_at is None:
            extra.append(f"TIMED OUT after {timeout:.0f}s")
        extra.append(dup.note())
        self.row = record(Row(self.name, sent=self.ledger.deliveries, accepted=len(batch.ids),
                              processed=len(batch.ids) - lost, lost=lost, duplicated=dup.total,
                              recovery_s=recovery, note="; ".join(extra), evidence=sources or {}))
        self.batch = batch
        return self.row


def _safe(check: Callable[[evidence.Accepted], bool], batch: evidence.Accepted) -> bool:
    try:
        return bool(check(batch))
    except Exception:  # noqa: BLE001 - an effect not readable yet is an effect not there yet
        return False


@contextlib.contextmanager
def scenario(world: World, name: str) -> Iterator[Run]:
    run = Run(world, name, world.baseline())
    try:
        yield run
    except BaseException as exc:
        if run.row is None:
            first = (str(exc).splitlines() or [""])[0][:160]
            run.conclude(timeout=0, note=f"aborted: {type(exc).__name__}: {first}")
        raise
    if run.row is None:
        run.conclude(timeout=0, note="the scenario never concluded")
        raise AssertionError(f"{name}: the scenario never called conclude()")
