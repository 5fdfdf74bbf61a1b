"""A ``buildah bud`` started before its Dockerfile is known, so its start-up overlaps the fetch.

``buildah bud`` spends its first 17-26 ms starting (the Go runtime, its config files, the
storage's records; measured from its spawn to its open of the Dockerfile), and a build spends
about as long before it has a Dockerfile to give: the mirror's fetch, the commit's facts, the kept
checkout moved. For a branch push whose paths name an image, everything else ``bud``'s command
line says is known from the push alone: the tags (no ``{describe}``), the context (the image's
kept checkout), the build args and the target. So the build starts with ``-f`` naming a FIFO,
and once the checkout is moved the commit's Dockerfile (labelled, when the keys are a build step)
is written into it: buildah's ``open`` of a FIFO waits for a writer, and it reads nothing of the
context (its ignore files included) before that.

A prestarted ``bud`` is only used for the build it guessed (``fits``: the same spec but for the
labels, which go in the Dockerfile written later or to the push); any other outcome (the image
re-tagged, the push superseded, a tag that differs) stops it, and the build starts its own.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from handlers.build.process import LoggedProcess

if TYPE_CHECKING:
    from handlers.build.builder import BuildSpec

OPEN_POLL_SECONDS = 0.001
"""How often ``feed`` looks again for buildah's end of the FIFO while buildah is still starting."""


def ignore_files(dockerfile: Path) -> list[Path]:
    """The ignore files buildah reads beside a Dockerfile (``<name>.containerignore`` or
    ``<name>.dockerignore``), which a Dockerfile written elsewhere must take along."""
    return [p for p in (dockerfile.with_name(f"{dockerfile.name}.{kind}") for kind in ("containerignore",
                                                                                      "dockerignore")) if p.is_file()]


@dataclass
class PrestartedBud:
    """A running ``bud`` reading its Dockerfile from ``fifo``; its guessed ``spec`` has no labels."""

    spec: BuildSpec
    fifo: Path
    process: LoggedProcess
    _closers: contextlib.ExitStack = field(repr=False)
    fed: bool = False
    closed: bool = False

    def fits(self, spec: BuildSpec) -> bool:
        """Whether it builds what ``spec`` asks, the labels aside (they come with the Dockerfile)."""
        unlabelled = {"labels": {}, "source": None}
        return not (self.fed or self.closed) and replace(spec, **unlabelled) == replace(self.spec, **unlabelled)

    def feed(self, dockerfile: str, ignores: list[Path], timeout: float) -> None:
        """Give buildah its Dockerfile (and the ignore files beside the original), waiting for it
        at most until ``timeout`` seconds from its start. If buildah ended before it read it,
        nothing is written: its exit status and log say why."""
        self.fed = True
        for ignore in ignores:
            shutil.copyfile(ignore, self.fifo.with_name(ignore.name))
        fd = self._writer(self.process.started + timeout)
        if fd is None:
            return
        try:
            os.set_blocking(fd, True)
            data = dockerfile.encode()
            while data:
                data = data[os.write(fd, data):]
        except BrokenPipeError:  # buildah ended while reading: its exit status says why
            pass
        finally:
            os.close(fd)

    def _writer(self, deadline: float) -> int | None:
        """The FIFO opened for writing once buildah has it open for reading; None if buildah ended
        (or the deadline passed) first. A blocking open would wait forever for a buildah that died."""
        while True:
            try:
                return os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
            if self.process.proc.poll() is not None or time.monotonic() >= deadline:
                return None
            time.sleep(OPEN_POLL_SECONDS)

    def close(self, why: str | None = None) -> None:
        """Stop it if it still runs and remove its FIFO. Not given its Dockerfile, it built nothing:
        with ``why`` (the build goes on in the same log) that goes in its log, else the log goes."""
        if self.closed:
            return
        self.closed = True
        unused = not self.fed
        if unused and why:
            self.process.note(f"started before the commit was known, not used: {why}")
        self._closers.close()
        if unused and not why:
            self.process.log.unlink(missing_ok=True)
