"""The build subprocess runner: deadlines and the stop switch reach the whole process group, and a
build does not outlive its worker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from handlers.build import orphans
from handlers.build.errors import Superseded
from handlers.build.process import RUNNING_DIR, ProcessTimedOut, run_logged, wait_for_exit

REPO_ROOT = Path(__file__).resolve().parents[3]

# a parent that ignores nothing and a grandchild in the same group, both printing their pid
SCRIPT = "sleep 30 & echo child=$! ; echo started; wait"


def child_pid(log: Path) -> int:
    return int(next(line for line in log.read_text().splitlines() if line.startswith("child="))[6:])


def gone(pid: int, within: float = 2.0) -> bool:
    """Dead (or a zombie) within ``within`` seconds: a signal is delivered asynchronously."""
    deadline = time.monotonic() + within
    while True:
        try:
            os.kill(pid, 0)
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except (ProcessLookupError, FileNotFoundError):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


@pytest.fixture(params=["pidfd", "polling"])
def wait_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways of noticing the exit: a pidfd (Linux 5.3+), and polling where there is none."""
    if request.param == "polling":
        monkeypatch.delattr(os, "pidfd_open", raising=False)
    return str(request.param)


def test_the_exit_is_noticed_from_a_pidfd_not_a_sleeping_poll(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """``Popen.wait(timeout=...)`` sleeps up to 50 ms between polls: each build step ended late."""
    waits: list[float | None] = []
    real_wait = subprocess.Popen.wait

    def wait(self: subprocess.Popen[bytes], timeout: float | None = None) -> int:
        waits.append(timeout)
        return real_wait(self, timeout)

    monkeypatch.setattr(subprocess.Popen, "wait", wait)
    log = tmp_path / "b.log"
    assert run_logged(["sh", "-c", "sleep 0.3; exit 3"], log=log, timeout=10, should_continue=lambda: True) == 3
    assert waits == [None], "reaped once, after the pidfd said it exited"


def test_output_and_exit_status_go_to_the_log(tmp_path: Path, wait_path: str) -> None:
    log = tmp_path / "b.log"
    assert run_logged(["sh", "-c", "echo hello; exit 4"], log=log, timeout=10, should_continue=lambda: True) == 4
    assert log.read_text().splitlines() == ["$ sh -c 'echo hello; exit 4'", "hello", "# exit 4"]


def test_a_deadline_kills_the_whole_group(tmp_path: Path, wait_path: str) -> None:
    log = tmp_path / "b.log"
    started = time.monotonic()
    with pytest.raises(ProcessTimedOut):
        run_logged(["sh", "-c", SCRIPT], log=log, timeout=1, should_continue=lambda: True)
    assert time.monotonic() - started < 5
    assert gone(child_pid(log))


def test_should_continue_false_stops_the_group(tmp_path: Path, wait_path: str) -> None:
    log = tmp_path / "b.log"
    stop_at = time.monotonic() + 1
    with pytest.raises(Superseded):
        run_logged(["sh", "-c", SCRIPT], log=log, timeout=60, should_continue=lambda: time.monotonic() < stop_at)
    assert gone(child_pid(log))


WORKER = """
import sys
from pathlib import Path
from handlers.build import orphans
from handlers.build.process import run_logged
if sys.argv[3] == "preexec":
    orphans.SETPRIV = None
run_logged(["sh", "-c", sys.argv[2]], log=Path(sys.argv[1]), timeout=300, should_continue=lambda: True)
"""


@pytest.fixture(params=["setpriv", "preexec"])
def death_signal_path(request: pytest.FixtureRequest) -> str:
    """Both ways a build asks for its parent-death signal: through ``setpriv``, or a ``preexec_fn``
    where there is no ``setpriv``."""
    if request.param == "setpriv":
        assert orphans.SETPRIV is not None, "setpriv not found: install it with: apt-get install util-linux"
    return str(request.param)


def start_worker(log: Path, death_path: str = "setpriv") -> subprocess.Popen[bytes]:
    """A stand-in worker process running one build; returns once the build printed its child."""
    worker = subprocess.Popen([sys.executable, "-c", WORKER, str(log), SCRIPT, death_path], cwd=REPO_ROOT)
    deadline = time.monotonic() + 10
    # the line itself: the log's first line, the command, names it too
    while not (log.exists() and "started" in log.read_text().splitlines()
               and any((log.parent / RUNNING_DIR).glob("*.json"))):
        assert time.monotonic() < deadline, "the build never started"
        time.sleep(0.05)
    return worker


def test_a_killed_worker_takes_its_build_leader_along_and_the_next_build_reaps_the_rest(
        tmp_path: Path, death_signal_path: str) -> None:
    log = tmp_path / "orphan.log"
    worker = start_worker(log, death_signal_path)
    records = list((tmp_path / RUNNING_DIR).glob("*.json"))
    assert len(records) == 1
    leader = int(records[0].stem)
    worker.kill()  # kill -9, as a crash would
    worker.wait()
    assert gone(leader, within=5), "the parent-death signal never reached the build"
    assert not gone(child_pid(log), within=0), "the RUN-like grandchild outlives its leader: only the reaper stops it"
    assert run_logged(["true"], log=tmp_path / "next.log", timeout=10, should_continue=lambda: True) == 0
    assert gone(child_pid(log))
    assert not list((tmp_path / RUNNING_DIR).glob("*.json"))


def test_a_build_whose_worker_lives_is_not_reaped(tmp_path: Path) -> None:
    log = tmp_path / "alive.log"
    worker = start_worker(log)
    try:
        assert orphans.reap(tmp_path / RUNNING_DIR) == []
        assert not gone(child_pid(log), within=0)
    finally:
        worker.kill()
        worker.wait()
    run_logged(["true"], log=tmp_path / "next.log", timeout=10, should_continue=lambda: True)
    assert gone(child_pid(log))


def test_with_setpriv_the_worker_is_not_forked_to_start_a_build(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``preexec_fn`` makes ``subprocess`` fork the whole worker (its page tables: tens of ms on
    a VM) where it could vfork; ``setpriv`` asks for the signal in the child instead."""
    spawned: list[tuple[list[str], object]] = []
    real_popen = subprocess.Popen

    def popen(args: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        spawned.append((list(args), kwargs.get("preexec_fn")))
        return real_popen(args, **kwargs)  # type: ignore[call-overload,no-any-return]

    monkeypatch.setattr(subprocess, "Popen", popen)
    log = tmp_path / "b.log"
    assert run_logged(["sh", "-c", "exit 5"], log=log, timeout=10, should_continue=lambda: True) == 5
    assert spawned == [([orphans.SETPRIV, "--pdeathsig", "TERM", "--", "sh", "-c", "exit 5"], None)]
    assert log.read_text().splitlines()[0] == "$ sh -c 'exit 5'", "the log shows the build's command, not the wrapper"


def test_wait_for_exit_returns_the_status_at_once_or_raises_past_its_limit(wait_path: str) -> None:
    quick = subprocess.Popen(["sh", "-c", "sleep 0.2; exit 3"])
    began = time.monotonic()
    assert wait_for_exit(quick, 10) == 3
    assert time.monotonic() - began < 5
    slow = subprocess.Popen(["sleep", "30"])
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            wait_for_exit(slow, 0.2)
    finally:
        slow.kill()
        slow.wait()
