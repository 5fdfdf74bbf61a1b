"""CPU time and memory of a process and its descendants, read from /proc (Linux).

CPU time is user + system of every live process of the tree, plus what the tree's processes
reaped from their exited children (``cutime``/``cstime``: e.g. a worker's ``git fetch``), in
seconds; two readings bound a window. Memory is the tree's resident set (RSS) now.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class TreeSample:
    cpu_seconds: float
    rss_bytes: int
    processes: int


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses; split after the last ')'.
    return text[text.rindex(")") + 2:].split()


def descendants(root: int) -> list[int]:
    """``root`` and every live process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def sample(*roots: int) -> TreeSample:
    """CPU seconds (live + reaped children) and RSS of the trees under ``roots``."""
    cpu, rss, count = 0, 0, 0
    for pid in {p for root in roots for p in descendants(root)}:
        fields = _stat(pid)
        if fields is None:
            continue
        # after "state": ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime
        cpu += sum(int(fields[i]) for i in (11, 12, 13, 14))
        rss += int(fields[21]) * PAGE
        count += 1
    return TreeSample(cpu_seconds=cpu / TICKS, rss_bytes=rss, processes=count)
