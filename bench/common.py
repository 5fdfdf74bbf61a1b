"""Shared helpers for the benchmarks: result rows, percentiles, temp stacks, processes, the machine.

Every benchmark starts what it needs from the project's own stack code (``Stack`` components,
``KubeCluster.start``) under its own temp state dir and free ports, and stops it afterwards.
Everything listens on 127.0.0.1; every loop is bounded.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


@dataclass
class Row:
    """One line of the BENCHMARKS.md table. ``met`` is None when the row carries no target."""

    benchmark: str
    metric: str
    shipline: str
    baseline: str = "–"
    ratio: str = "–"
    target: str = "–"
    met: bool | None = None


@dataclass
class Section:
    """What one benchmark measured: table rows, facts (checks, sizes) and notes on unmet targets."""

    name: str
    title: str
    rows: list[Row] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    """Raw measurements (kept in results.json) for notes computed from the run, never typed in."""
    measured_at: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    seconds: float = 0.0
    machine: str = ""
    """The machine line at the time of the run (sections of one file may come from different runs)."""

    def row(self, metric: str, shipline: str, *, baseline: str = "–", ratio: str = "–", target: str = "–",
            met: bool | None = None) -> None:
        self.rows.append(Row(self.title, metric, shipline, baseline, ratio, target, met))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Section:
        rows = [Row(**r) for r in data.pop("rows", [])]
        return cls(**data, rows=rows)


# -- numbers -----------------------------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: every reported value was observed)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.4999)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def secs(seconds: float) -> str:
    return f"{seconds:.2f} s"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b else "–"


class Stopwatch:
    def __init__(self) -> None:
        self.started = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.started


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    began = time.perf_counter()
    result = fn()
    return time.perf_counter() - began, result


def poll(check: Callable[[], Any], *, timeout: float, interval: float = 0.01, what: str) -> Any:
    """Call ``check`` until it returns something truthy; bounded by ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached within {timeout:g}s")
        time.sleep(interval)


# -- places and processes ----------------------------------------------------------------------------


@contextlib.contextmanager
def state_dir(name: str) -> Iterator[Path]:
    """A fresh temp dir for one benchmark, removed afterwards (``SHIPLINE_BENCH_KEEP=1`` keeps it)."""
    path = Path(tempfile.mkdtemp(prefix=f"shipline-bench-{name}-"))
    try:
        yield path
    finally:
        if os.environ.get("SHIPLINE_BENCH_KEEP"):
            print(f"  (kept {path})", flush=True)
        else:
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def started(*components: Any) -> Iterator[None]:
    """Start stack components (``RedisServer``, ``Registry``, ``GitServer``, ...) and stop them after."""
    running: list[Any] = []
    try:
        for component in components:
            component.start()
            running.append(component)
        yield
    finally:
        for component in reversed(running):
            with contextlib.suppress(Exception):
                component.stop()


def run(argv: Sequence[str], *, cwd: Path | None = None, timeout: float = 600, env: dict[str, str] | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv[:6]))} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return done


GIT = ["git", "-c", "user.name=Bench", "-c", "user.email=bench@shipline.local", "-c", "init.defaultBranch=main"]


def git(work: Path, *args: str, timeout: float = 600) -> str:
    return run([*GIT, "-C", str(work), *args], timeout=timeout).stdout


def say(message: str) -> None:
    print(f"  · {message}", flush=True)


# -- the machine -------------------------------------------------------------------------------------


def machine() -> str:
    """Cores, memory, CPU model, kernel, Python, date: one line for BENCHMARKS.md."""
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_gib = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
        mem_gib = int(kb.split()[1]) / 1024 / 1024
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{os.cpu_count()} cores ({model}), {mem_gib:.1f} GiB RAM, Linux {platform.release()}, "
            f"Python {platform.python_version()}, {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, "
            f"load average at start {load}")


def tool_version(argv: Sequence[str]) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=10)
        text = (done.stdout or done.stderr).strip().splitlines()
        return text[0] if text else "?"
    return "?"


class Proc:
    """A process this benchmark started (own session, log file); ``stop`` ends its group by id."""

    def __init__(self, argv: Sequence[str], *, log: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.argv = list(argv)
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            self.popen = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          env={**os.environ, **(env or {})}, cwd=cwd or REPO_ROOT,
                                          start_new_session=True)

    def wait_port(self, port: int, timeout: float = 30) -> Proc:
        from devstack.process import port_open

        deadline = time.monotonic() + timeout
        while not port_open(port):
            if self.popen.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
                raise RuntimeError(f"{self.argv[:4]} did not listen on {port}:\n{tail}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        import signal

        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)

    def __enter__(self) -> Proc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
