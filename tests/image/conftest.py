"""One working container of Shipline's image for the session: commands run in it with
``buildah run`` (chroot isolation, host network), files are copied into it, its root is mounted."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest

from devstack.baseimage import buildah_argv
from devstack.debianbase import buildah
from devstack.shiplineimage import ShiplineImage
from devstack.stack import Stack


@dataclass
class WorkingContainer:
    state_dir: Path
    name: str
    image: ShiplineImage

    def argv(self, *command: str, user: str | None = None) -> list[str]:
        """``buildah run`` of ``command`` as the image's user (or ``user``)."""
        who = ["--user", user] if user else []
        return [*buildah_argv(self.state_dir), "run", "--isolation", "chroot", *who, self.name, "--", *command]

    def run(self, *command: str, user: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*command, user=user), capture_output=True, text=True, timeout=timeout)

    def shipline(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The image's own ENTRYPOINT (tini -- shipline) with ``args``, as Kubernetes runs it."""
        return self.run(*self.config["Entrypoint"], *args)

    @contextlib.contextmanager
    def background(self, *command: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
        """``command`` running in the container until the block ends, then stopped with SIGTERM.

        tini puts its child in a process group of its own, and buildah answers a signal by killing
        tini: the signal goes to every process of the session started here, the app's included."""
        with log.open("wb") as out:
            proc = subprocess.Popen(self.argv(*command), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield proc
        finally:
            _signal_session(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + 20
            while _session(proc.pid) and time.monotonic() < deadline:
                proc.poll()
                time.sleep(0.1)
            _signal_session(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def copy(self, source: Path, dest: str) -> None:
        buildah(self.state_dir, "copy", self.name, str(source), dest)

    def mount(self) -> Path:
        return Path(buildah(self.state_dir, "mount", self.name))

    @cached_property
    def config(self) -> dict[str, Any]:
        """The image's OCI config (User, Entrypoint, Env, ...)."""
        info = json.loads(buildah(self.state_dir, "inspect", "--type", "image", self.image.ref))
        return info["OCIv1"]["config"]


def _session(sid: int) -> list[int]:
    """Live processes of session ``sid`` (field 6 of /proc/<pid>/stat)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid and fields[0] != "Z":
                members.append(int(stat.parent.name))
    return members


def _signal_session(sid: int, sig: int) -> None:
    for pid in _session(sid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


@pytest.fixture(scope="session")
def image_container(stack: Stack, shipline_image: ShiplineImage) -> Iterator[WorkingContainer]:
    name = buildah(stack.state_dir, "from", "--pull-never", shipline_image.ref)
    yield WorkingContainer(stack.state_dir, name, shipline_image)
    subprocess.run([*buildah_argv(stack.state_dir), "rm", name], capture_output=True, check=False)
