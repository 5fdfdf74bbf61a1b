"""The worker's watchdog for actor threads stuck past their time limit.

dramatiq's ``TimeLimit`` stops an actor by raising an exception in its thread, which lands only
when the thread runs Python again: a thread blocked in a system call that has no timeout (a socket
read, a lock, a child's wait) stays blocked, its message neither acknowledged nor redelivered while
the process keeps its heartbeat. That is an accepted event held forever, out of sight, and a thread
fewer for everything else.

``StuckWatch`` notes when each message started; one still running ``grace`` seconds after its
actor's time limit makes its worker process log the stuck thread's stack and exit with
``STUCK_EXIT_CODE``. dramatiq's parent then stops (it stops whenever a worker process dies), its
supervisor (the Deployment, systemd) starts it again, and the Redis broker redelivers the dead
process's messages once its heartbeat expires. Before exiting, the watchdog counts the hang in the
message's stored copy (``HANGS_OPTION``): a message that has hung its worker ``max_hangs`` times is
given up, visibly, on its next delivery instead of taking the worker down again.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dramatiq.middleware import Middleware, SkipMessage, TimeLimit

log = logging.getLogger("shipline.worker")

STUCK_EXIT_CODE = 75
"""``EX_TEMPFAIL``: the worker process exits with it, and so does ``shipline worker``."""
HANGS_OPTION = "shipline_hangs"
"""How many worker processes this message has hung, in the message's own options."""
MAX_HANGS = 2
GRACE_SECONDS = 60.0
STACK_FRAMES = 25


class Hung(Exception):
    """A message that hung its worker too often: given up without running it again."""


@dataclass(frozen=True, slots=True)
class Running:
    message: Any
    """The ``dramatiq.MessageProxy`` being processed."""
    thread_id: int
    deadline: float
    """``time.monotonic()`` past which the thread counts as stuck: its time limit plus the grace."""


class StuckWatch(Middleware):
    def __init__(self, *, on_give_up: Callable[[Any, BaseException], None], grace_seconds: float = GRACE_SECONDS,
                 max_hangs: int = MAX_HANGS, exit_process: Callable[[int], Any] = os._exit) -> None:
        self.on_give_up = on_give_up
        self.grace_seconds = grace_seconds
        self.max_hangs = max_hangs
        self.exit_process = exit_process
        self.running: dict[int, Running] = {}
        self.lock = threading.Lock()

    def after_worker_boot(self, broker: Any, worker: Any) -> None:
        threading.Thread(target=self._watch, args=(broker,), name="shipline-stuckwatch", daemon=True).start()

    def before_process_message(self, broker: Any, message: Any) -> None:
        hangs = int(message.options.get(HANGS_OPTION, 0))
        if hangs >= self.max_hangs:
            error = Hung(f"{message.actor_name} hung its worker process {hangs} times, each past its time limit "
                         f"plus {self.grace_seconds:g}s (see the worker's log for the stack it was stuck in); "
                         "given up without running it again")
            log.error("%s (message %s)", error, message.message_id)
            self.on_give_up(message, error)
            raise SkipMessage(str(error))
        limit_ms = _time_limit_ms(broker, message)
        deadline = time.monotonic() + limit_ms / 1000 + self.grace_seconds
        with self.lock:
            self.running[threading.get_ident()] = Running(message, threading.get_ident(), deadline)

    def after_process_message(self, broker: Any, message: Any, *, result: Any = None,
                              exception: BaseException | None = None) -> None:
        with self.lock:
            self.running.pop(threading.get_ident(), None)

    after_skip_message = after_process_message  # as dramatiq's TimeLimit does: the same bookkeeping

    def stuck(self, now: float) -> Running | None:
        """The message whose thread has been running longest past its deadline, if any."""
        with self.lock:
            late = [r for r in self.running.values() if now > r.deadline]
        return min(late, key=lambda r: r.deadline, default=None)

    def _watch(self, broker: Any) -> None:
        interval = max(0.05, min(5.0, self.grace_seconds / 4))
        while True:
            time.sleep(interval)
            found = self.stuck(time.monotonic())
            if found is not None:
                self.give_way(broker, found)

    def give_way(self, broker: Any, stuck: Running) -> None:
        """Log where the thread is stuck, count the hang on the message, end the process."""
        message = stuck.message
        frames = sys._current_frames().get(stuck.thread_id)
        where = "".join(traceback.format_stack(frames, limit=STACK_FRAMES)) if frames else "(thread gone)\n"
        hangs = int(message.options.get(HANGS_OPTION, 0)) + 1
        log.error("%s (message %s, args %s) is stuck %.0fs past its time limit plus grace; this worker process "
                  "exits (%d) so the message is redelivered (hang %d of %d before it is given up). Stuck in:\n%s",
                  message.actor_name, message.message_id, list(message.args), time.monotonic() - stuck.deadline,
                  STUCK_EXIT_CODE, hangs, self.max_hangs, where)
        try:
            count_hang(broker, message, hangs)
        except Exception as exc:  # noqa: BLE001 - exit anyway: a stuck thread is worse than an uncounted hang
            log.error("could not count the hang on message %s: %s", message.message_id, exc)
        for handler in logging.getLogger().handlers:
            handler.flush()
        self.exit_process(STUCK_EXIT_CODE)


def count_hang(broker: Any, message: Any, hangs: int) -> None:
    """Rewrite the message's stored copy (dramatiq's Redis broker keeps it in ``<queue>.msgs`` by
    its Redis id until it is acknowledged) with ``HANGS_OPTION``, so its redelivery carries it."""
    key = f"{broker.namespace}:{message.queue_name}.msgs"
    field = message.options["redis_message_id"]
    if broker.client.hexists(key, field):
        broker.client.hset(key, field, message.copy(options={HANGS_OPTION: hangs}).encode())


def _time_limit_ms(broker: Any, message: Any) -> float:
    """The limit dramatiq's ``TimeLimit`` enforces on this message (its option, its actor's, the default)."""
    default = next((m.time_limit for m in broker.middleware if isinstance(m, TimeLimit)), 600_000)
    actor = broker.get_actor(message.actor_name)
    return float(message.options.get("time_limit") or actor.options.get("time_limit", default))
