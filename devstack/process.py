"""Start, find and stop the stack's daemons: each one a detached process with a log and a pid file."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from handlers.errors import ShiplineError


class StackError(ShiplineError, RuntimeError):
    """A component is missing or did not come up; the message says how to fix it."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def wait_until(check: Callable[[], bool], *, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.1)
    tail = ""
    if log is not None and log.exists():
        lines = log.read_text(errors="replace").splitlines()[-25:]
        tail = f"\n--- last lines of {log} ---\n" + "\n".join(lines)
    raise StackError(f"{what} did not become ready within {timeout:.0f}s{tail}")


@dataclass
class Daemon:
    """A named background process whose pid and log live under ``run_dir``."""

    name: str
    run_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        if _is_zombie(pid):
            return None
        return pid

    def running(self) -> bool:
        return self.pid() is not None

    def start(
        self, argv: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> int:
        """Start ``argv`` detached (own session, survives the caller); no-op if already running."""
        existing = self.pid()
        if existing is not None:
            return existing
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        return proc.pid

    def stop(self, *, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.pid() is not None:
                _reap(pid)
                time.sleep(0.05)
            if self.pid() is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                _reap(pid)
            # a child forked while the signal went out (a worker stopped a second after its start)
            # misses it and outlives the leader: what is left of the group goes too
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)

    def kill(self) -> None:
        """``kill -9`` the process group, as a crash would."""
        self.stop(timeout=5.0, sig=signal.SIGKILL)


def _is_zombie(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state == "Z"


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def cached_output(script: Path, hint: str, *, expect: Sequence[str] = (), timeout: float = 1800,
                  error: type[Exception] = StackError) -> Path:
    """Run a cache-building ``scripts/build-*.sh`` (a no-op once its cache is complete) and return
    the path its last line names, which must exist and hold every name in ``expect``; else
    ``error`` with ``hint`` and the tail of the script's stderr. The default limit fits mmdebstrap
    (about a minute) and a cold kubectl build (a few); a warm cache answers at once."""
    if not script.exists():
        raise error(f"{script} is missing: {hint}")
    try:
        proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise error(f"{script.name} took longer than {timeout:g}s: {hint}") from None
    lines = proc.stdout.strip().splitlines()
    found = Path(lines[-1]) if lines else None
    if proc.returncode != 0 or found is None or not found.exists() or not all((found / n).exists() for n in expect):
        tail = "\n".join(proc.stderr.strip().splitlines()[-20:])
        raise error(f"{script.name} failed ({proc.returncode}): {hint}\n{tail}")
    return found


def require_binary(path: str | Path, hint: str) -> Path:
    import shutil

    found = shutil.which(str(path))
    if found is None:
        raise StackError(f"{path} not found: {hint}")
    return Path(found)
