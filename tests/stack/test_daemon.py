"""``devstack.process.Daemon``: stopping one leaves nothing of its process group behind."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from devstack.process import Daemon, wait_until

LEADER = """
import signal, subprocess, sys
child = subprocess.Popen(["sleep", "300"], preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN))
open(sys.argv[1], "w").write(str(child.pid))
signal.pause()
"""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_child_that_outlives_the_leader_is_stopped_with_it(tmp_path: Path) -> None:
    daemon, child_file = Daemon("leader", tmp_path), tmp_path / "child.pid"
    leader = daemon.start([sys.executable, "-c", LEADER, str(child_file)])
    wait_until(lambda: child_file.exists() and child_file.read_text() != "", timeout=10, what="the child")
    child = int(child_file.read_text())
    assert os.getpgid(child) == leader, "the child is in the leader's group, and ignores SIGTERM"
    daemon.stop(timeout=5)
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child) and daemon.pid() is None
