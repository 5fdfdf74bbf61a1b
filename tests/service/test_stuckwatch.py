"""The worker's watchdog (``service.stuckwatch``) on a real dramatiq worker and Redis: a thread
blocked past its time limit ends its worker process with the stack in the log, the message comes
back, and after its second hang it is given up visibly while the worker keeps working."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dramatiq
import redis

from devstack.process import wait_until
from devstack.stack import Stack
from service.broker import NAMESPACE
from service.stuckwatch import STUCK_EXIT_CODE

ROOT = Path(__file__).resolve().parents[2]
QUEUE = "stuck-test"


def worker(stack: Stack, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "STUCK_TEST_REDIS_URL": stack.redis.url, "dramatiq_worker_timeout": "100"}
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "dramatiq", "tests.service.stuck_app", "--processes", "1",
                                 "--threads", "2"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # so ``stop`` reaches the worker process too


def stop(proc: subprocess.Popen[bytes]) -> None:
    """The dramatiq parent and its worker process, whatever state the test left them in."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def send(stack: Stack, actor: str, tag: str) -> None:
    from service.broker import make_broker

    sender = make_broker(stack.redis.url)
    sender.declare_queue(QUEUE)
    sender.enqueue(dramatiq.Message(queue_name=QUEUE, actor_name=actor, args=(tag,), kwargs={}, options={}))
    sender.close()


def listed(r: redis.Redis, key: str) -> list[str]:
    return list(r.lrange(f"stuck-test:{key}", 0, -1))


def test_a_thread_stuck_past_its_limit_ends_its_worker_and_its_message_is_given_up_after_two_hangs(
        stack: Stack, redis_client: redis.Redis, tmp_path: Path) -> None:
    send(stack, "hang", "h1")
    for hang in (1, 2):
        log = tmp_path / f"run{hang}.log"
        proc = worker(stack, log)
        try:
            code = proc.wait(timeout=60)
        finally:
            stop(proc)
        text = log.read_text()
        assert code == STUCK_EXIT_CODE, text[-3000:]
        assert listed(redis_client, "started") == ["h1"] * hang
        assert "hang (message " in text and f"hang {hang} of 2 before it is given up" in text, text[-3000:]
        assert "time.sleep(3600)" in text, "the log shows where the thread was stuck"

    log = tmp_path / "run3.log"
    proc = worker(stack, log)
    try:
        send(stack, "spin", "s1")  # TimeLimit interrupts this one: no reason to end the process
        send(stack, "record", "r1")
        wait_until(lambda: listed(redis_client, "given-up") and listed(redis_client, "done"), timeout=60,
                   what="the twice-hung message given up and the next one done")
        time.sleep(3)  # past spin's limit plus the grace: the watchdog would have fired by now
        assert proc.poll() is None, log.read_text()[-3000:]
        assert listed(redis_client, "started") == ["h1", "h1", "s1"]  # the third delivery never ran
        assert listed(redis_client, "done") == ["r1"]
        [given_up] = listed(redis_client, "given-up")
        assert given_up.startswith("hang ['h1']: hang hung its worker process 2 times"), given_up
        wait_until(lambda: not redis_client.hlen(f"{NAMESPACE}:{QUEUE}.msgs"), timeout=30,
                   what="every message acknowledged")
        proc.terminate()
        assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]
    finally:
        stop(proc)
