"""Run one build subprocess with its output in a log file, a hard deadline and a stop switch.

The child gets its own session (process group), so stopping it reaches every descendant that
stays in the group (``buildah-chroot-exec`` and the ``RUN`` command included): ``SIGTERM`` first —
buildah then removes its working container (with ``--force-rm``) — and ``SIGKILL`` to the whole
group after ``KILL_GRACE_SECONDS``. The limit is enforced here, on the process, not by a worker
middleware that cannot stop a subprocess.

The build is tied to its worker (``handlers.build.orphans``): it gets a SIGTERM when the worker
thread that started it dies, and each run first kills what is left of builds whose worker died
(recorded in ``<log dir>/.running/``), so a ``kill -9``-ed worker leaves no build running once
its job is redelivered.
"""

from __future__ import annotations

import contextlib
import os
import select
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from handlers.build import orphans
from handlers.build.errors import Superseded

POLL_SECONDS = 0.5
RUNNING_DIR = ".running"
"""Beside the build logs: one record per running build, for ``orphans.reap``."""
KILL_GRACE_SECONDS = 10.0


class ProcessTimedOut(Exception):
    """The deadline passed; the process group is already stopped."""


def run_logged(argv: Sequence[str], *, log: Path, timeout: float, should_continue: Callable[[], bool],
               env: Mapping[str, str] | None = None) -> int:
    """Exit status of ``argv``; raises ``ProcessTimedOut`` or ``Superseded`` after stopping it."""
    with LoggedProcess(argv, log=log, env=env) as running:
        return running.wait(timeout, should_continue)


class LoggedProcess:
    """``argv`` started now, writing into ``log``; ``wait`` for it, and leaving the block (or
    ``close``) stops it if it still runs and logs its exit."""

    def __init__(self, argv: Sequence[str], *, log: Path, env: Mapping[str, str] | None = None) -> None:
        running = log.parent / RUNNING_DIR
        orphans.reap(running)
        self.log = log
        self._out = log.open("ab")
        try:
            self._out.write(f"$ {shlex.join(argv)}\n".encode())
            self._out.flush()
            spawned, preexec = orphans.dying_with_parent(argv, os.getpid())
            self.proc = subprocess.Popen(spawned, stdin=subprocess.DEVNULL, stdout=self._out,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         env=dict(env) if env is not None else None,
                                         # preexec_fn (no setpriv here) with threads around: it only calls prctl
                                         preexec_fn=preexec)
        except BaseException:
            self._out.close()
            raise
        self.started = time.monotonic()
        self._record = orphans.Running.register(running, self.proc.pid)

    def __enter__(self) -> LoggedProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait(self, timeout: float, should_continue: Callable[[], bool]) -> int:
        """Its exit status, ``timeout`` seconds from its start at most; raises ``ProcessTimedOut``
        or ``Superseded`` after stopping it."""
        return _wait(self.proc, self.started + timeout, should_continue)

    def note(self, line: str) -> None:
        """A ``# line`` in the log, between what the process writes."""
        self._out.write(f"# {line}\n".encode())
        self._out.flush()

    def close(self) -> None:
        if self._out.closed:
            return
        if self.proc.returncode is None:
            stop_group(self.proc)
        self.note(f"exit {self.proc.returncode}")
        if self._record is not None:
            self._record.unlink(missing_ok=True)
        self._out.close()


def _wait(proc: subprocess.Popen[bytes], deadline: float, should_continue: Callable[[], bool]) -> int:
    with _exit_notice(proc) as exited:
        while True:
            window = min(POLL_SECONDS, max(0.01, deadline - time.monotonic()))
            code = _exited_within(proc, exited, window)
            if code is not None:
                return code
            if time.monotonic() >= deadline:
                stop_group(proc)
                raise ProcessTimedOut(f"killed after its time limit (pid {proc.pid})")
            if not should_continue():
                stop_group(proc)
                raise Superseded("a newer push arrived; the build was stopped")


def wait_for_exit(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """``proc.wait(timeout)``, noticed the moment the process exits (``_exit_notice``); raises
    ``subprocess.TimeoutExpired`` past ``timeout``."""
    with _exit_notice(proc) as exited:
        code = _exited_within(proc, exited, timeout)
    if code is None:
        raise subprocess.TimeoutExpired(proc.args, timeout)
    return code


def _exited_within(proc: subprocess.Popen[bytes], exited: int | None, seconds: float) -> int | None:
    """``proc``'s exit status if it exits within ``seconds``, else None; through the pidfd ``exited``
    when there is one, else by ``Popen.wait``'s polling."""
    if exited is None:
        try:
            return proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return None
    return proc.wait() if select.select([exited], [], [], seconds)[0] else None


@contextlib.contextmanager
def _exit_notice(proc: subprocess.Popen[bytes]) -> Iterator[int | None]:
    """A pidfd that turns readable the moment ``proc`` exits (Linux 5.3+), or None.

    ``Popen.wait(timeout=...)`` sleeps between polls, up to 50 ms at a time: measured, it noticed
    a 70 ms process's exit 47 ms late and a 400 ms one's 19 ms late (4 ms with the pidfd), and a
    build is two such processes (``bud``, ``push``)."""
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # no pidfd here, or the process is already reaped
        yield None
        return
    try:
        yield fd
    finally:
        os.close(fd)


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, SIGKILL it after the grace period, reap the leader."""
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=KILL_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
    _signal_group(proc.pid, signal.SIGKILL)  # stragglers still in the group once the leader is gone


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
