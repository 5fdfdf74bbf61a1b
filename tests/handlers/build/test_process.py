"""The build subprocess runner: deadlines and the stop switch reach the whole process group."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from handlers.build.errors import Superseded
from handlers.build.process import ProcessTimedOut, run_logged

# a parent that ignores nothing and a grandchild in the same group, both printing their pid
SCRIPT = "sleep 30 & echo child=$! ; echo started; wait"


def child_pid(log: Path) -> int:
    return int(next(line for line in log.read_text().splitlines() if line.startswith("child="))[6:])


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def test_output_and_exit_status_go_to_the_log(tmp_path: Path) -> None:
    log = tmp_path / "b.log"
    assert run_logged(["sh", "-c", "echo hello; exit 4"], log=log, timeout=10, should_continue=lambda: True) == 4
    assert log.read_text().splitlines() == ["$ sh -c 'echo hello; exit 4'", "hello", "# exit 4"]


def test_a_deadline_kills_the_whole_group(tmp_path: Path) -> None:
    log = tmp_path / "b.log"
    started = time.monotonic()
    with pytest.raises(ProcessTimedOut):
        run_logged(["sh", "-c", SCRIPT], log=log, timeout=1, should_continue=lambda: True)
    assert time.monotonic() - started < 5
    assert gone(child_pid(log))


def test_should_continue_false_stops_the_group(tmp_path: Path) -> None:
    log = tmp_path / "b.log"
    stop_at = time.monotonic() + 1
    with pytest.raises(Superseded):
        run_logged(["sh", "-c", SCRIPT], log=log, timeout=60, should_continue=lambda: time.monotonic() < stop_at)
    assert gone(child_pid(log))
