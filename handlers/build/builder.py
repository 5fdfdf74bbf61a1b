"""How an image gets built and pushed: a one-method ``Builder`` and its buildah implementation.

The contract every backend keeps (a Kubernetes Job backend included): build ``spec`` and push every
tag in ``spec.tags``, or push nothing; return the pushed manifest digest; raise ``BuildFailed`` /
``BuildTimeout`` (permanent), ``PushDenied`` (permanent), ``RegistryUnavailable`` (transient) or
``Superseded`` (``should_continue`` said stop). Logs go to ``log``.

``BuildahBuilder`` keeps its storage under ``<state_dir>/buildah`` and builds with
``bud --isolation chroot --layers``, so unchanged steps come from the layer cache across builds.
The storage driver is overlay where the kernel offers it, else vfs (``handlers.build.storage``).
``spec.labels`` and ``spec.annotations`` are set while pushing, by ``shipline-push``
(``handlers.build.pushtool``): into the pushed config and manifest, with no build step. Without
that tool, labels become one ``LABEL`` instruction appended to a copy of the Dockerfile written
outside the context (``handlers.build.labels``): one committed step after every cached one,
instead of buildah's one step per ``--label`` (the flags remain the fallback), and annotations go
to ``bud --annotation``. A build may take a ``bud`` started before its commit was fetched
(``prestart``, ``handlers.build.prestart``), which reads its Dockerfile from a FIFO.
Credentials are resolved from ``RegistryConfig`` at build time and handed to buildah in a private
``--authfile`` (mode 0600, deleted afterwards) rather than ``--creds``: a command line is readable
by every local user in ``/proc``, and the log records the command. ``--tls-verify=false`` is used
for registries configured ``insecure: true`` (for ``bud`` it also covers the ``FROM`` pull).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol, runtime_checkable

from handlers.build import prune, pushtool, storage
from handlers.build.errors import (
    BuilderGlitch,
    BuildFailed,
    BuildTimeout,
    PushDenied,
    RegistryUnavailable,
    Superseded,
    log_tail,
)
from handlers.build.labels import with_labels
from handlers.build.prestart import PrestartedBud, ignore_files
from handlers.build.process import LoggedProcess, ProcessTimedOut, run_logged
from handlers.build.registry import credentials, is_insecure
from handlers.errors import PermanentError
from handlers.images import ImageRef
from handlers.settings import RegistryConfig

log = logging.getLogger("shipline.build")
PUSH_TIMEOUT_SECONDS = 600.0
"""Per tag; past it the push is killed and counts as a transient registry failure."""
_DENIED = re.compile(r"unauthorized|denied|authentication required|forbidden", re.IGNORECASE)
_told: set[str] = set()
"""Why ``shipline-push`` is not used, each reason logged once (``BuildahBuilder``)."""
_GLITCH = re.compile(r"sealing memfd copy: Device or resource busy")
"""buildah's chroot copies itself into a sealed memfd before each ``RUN``; the kernel can refuse the
seal for a moment (EBUSY while a page of it is still referenced). Seen once in about a thousand
builds here; the same build then succeeds."""


@dataclass(frozen=True, slots=True)
class GitSource:
    """Where the context comes from, for backends that fetch it themselves (``handlers.build.jobs``)."""

    url: str
    sha: str
    context: str
    """Repo-relative, ``.`` for the root."""
    dockerfile: str
    """Repo-relative."""


@dataclass(frozen=True, slots=True)
class BuildSpec:
    """One image to build from an exported context; paths are local, everything else is data."""

    image: str
    """``host/repository`` without a tag."""
    tags: tuple[str, ...]
    context: Path
    dockerfile: Path
    timeout_seconds: float
    build_args: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    """Manifest annotations, set at commit: no build step (``build.oci_metadata``)."""
    source: GitSource | None = None


@dataclass(frozen=True, slots=True)
class PruneResult:
    """Images in the storage before and after a prune; ``busy``: a build held the storage, so only
    what was old enough to spare a running build was removed."""

    before: int = 0
    after: int = 0
    busy: bool = False
    error: str = ""
    """``buildah rmi``'s complaint when it could not remove everything (an image still in use)."""


@dataclass(frozen=True, slots=True)
class BuiltImage:
    image: str
    tags: tuple[str, ...]
    digest: str


class Builder(Protocol):
    def build(self, spec: BuildSpec, *, log: Path, should_continue: Callable[[], bool]) -> BuiltImage:
        """Build, then push every tag (or none); see the module docstring for the error contract."""
        ...


@runtime_checkable
class Prestarting(Protocol):
    """A builder whose build can start before its commit is fetched (``handlers.build.prestart``)."""

    def prestarts(self, oci_metadata: str) -> bool:
        """Whether a ``bud`` can start before the commit's OCI keys are known, with them as
        ``oci_metadata`` (``labels`` or ``annotations``) says."""
        ...

    def prestart(self, spec: BuildSpec, *, log: Path) -> PrestartedBud:
        """``bud`` for ``spec`` (its Dockerfile still to come, its labels with it), started now."""
        ...

    def build(self, spec: BuildSpec, *, log: Path, should_continue: Callable[[], bool],
              prestarted: PrestartedBud | None = None) -> BuiltImage:
        """``Builder.build``, taking ``prestarted`` when it ``fits`` ``spec`` (else stopping it)."""
        ...


class BuildahBuilder:
    """``buildah bud`` + ``shipline-push`` (or ``buildah push``) ``--digestfile`` with storage under
    ``<state_dir>/buildah``."""

    def __init__(self, *, state_dir: Path, registries: list[RegistryConfig], storage_driver: str = "auto",
                 keys_at_push: bool = True) -> None:
        self.state_dir = state_dir
        self.registries = registries
        self.storage_setting = storage_driver
        self.push_tool, why_not = pushtool.find() if keys_at_push else (None, "")
        """``shipline-push``, which sets the OCI keys while pushing; None: a build step sets them."""
        if keys_at_push and self.push_tool is None and why_not not in _told:
            _told.add(why_not)  # once per worker process, not once per build
            log.warning("the OCI keys are set by a build step: %s", why_not)

    @property
    def storage_driver(self) -> str:
        """``overlay`` or ``vfs``: ``auto`` resolved once per storage dir (``handlers.build.storage``)."""
        return storage.storage_driver(self.storage_setting, self.state_dir / "buildah" / "storage").driver

    def prestarts(self, oci_metadata: str) -> bool:
        # annotations go on bud's command line, and their created key needs the fetched commit
        return self.push_tool is not None or oci_metadata == "labels"

    def prestart(self, spec: BuildSpec, *, log: Path) -> PrestartedBud:
        spec = self._built(spec)
        with contextlib.ExitStack() as closers:
            closers.enter_context(prune.storage_in_use(self.state_dir / "buildah"))
            authfile = closers.enter_context(self._authfile())
            fifo = Path(closers.enter_context(self._private_dir("dockerfile-"))) / spec.dockerfile.name
            os.mkfifo(fifo, 0o600)
            log.parent.mkdir(parents=True, exist_ok=True)
            process = closers.enter_context(LoggedProcess(self.bud_argv(spec, authfile, fifo), log=log))
            return PrestartedBud(spec, fifo, process, closers.pop_all())

    def build(self, spec: BuildSpec, *, log: Path, should_continue: Callable[[], bool],
              prestarted: PrestartedBud | None = None) -> BuiltImage:
        built = self._built(spec)
        dockerfile = self._taken(prestarted, built) if prestarted is not None else None
        with prune.storage_in_use(self.state_dir / "buildah"), self._authfile() as authfile:
            start = log.stat().st_size if log.exists() else 0
            if prestarted is not None and dockerfile is not None:
                self._bud_prestarted(built, prestarted, dockerfile, log, should_continue)
            else:
                with self._labelled(built) as labelled:
                    self._bud(built, authfile, log, should_continue, labelled)
            if built.annotations and not _committed(built, log, start):
                # every step came from the cache, so the image kept the annotations of the build
                # that made it; one LABEL step (the rest cached) commits it with these
                stamped = dataclasses.replace(built, labels={**built.annotations, **built.labels})
                with self._labelled(stamped) as restamped:
                    self._bud(stamped, authfile, log, should_continue, restamped)
            if not should_continue():
                raise Superseded("a newer push arrived before the push")
            digest = self._push_all(spec, authfile, log, should_continue)
        return BuiltImage(spec.image, spec.tags, digest)

    def prune(self, own: Sequence[str], keep: int, *,
              busy_spare_seconds: float | None = None) -> PruneResult | None:
        """Remove what ``handlers.build.prune`` says is no longer worth keeping, if no build is
        using the storage right now; else nothing (None), or, given ``busy_spare_seconds``, all
        of it but what is younger than that."""
        with prune.storage_idle(self.state_dir / "buildah") as idle:
            if not idle and busy_spare_seconds is None:
                return None
            spare_since = None if idle else datetime.now(UTC) - timedelta(seconds=busy_spare_seconds or 0)
            storage_dir = self.state_dir / "buildah" / "storage"
            images, parents = prune.read_storage(storage_dir, self.storage_driver)
            chosen = prune.plan(images, parents, own, keep, spare_since=spare_since)
            failed = ""
            if not chosen.empty:
                done = subprocess.run([*self._base(), "rmi", *chosen.names, *chosen.ids], capture_output=True,
                                      text=True, timeout=PUSH_TIMEOUT_SECONDS, check=False)
                failed = "" if done.returncode == 0 else log_tail(done.stderr, 4)
            left, _ = prune.read_storage(storage_dir, self.storage_driver)
            return PruneResult(before=len(images), after=len(left), error=failed, busy=not idle)

    def _base(self) -> list[str]:
        """Same storage layout as ``devstack.baseimage.buildah_argv`` (shared layer cache)."""
        binary = shutil.which("buildah")
        if binary is None:
            raise PermanentError("buildah not found: install it with: apt-get install buildah")
        root = self.state_dir / "buildah"
        return [binary, "--root", str(root / "storage"), "--runroot", str(root / "run"),
                "--storage-driver", self.storage_driver]

    def _insecure(self, image: str) -> bool:
        return is_insecure(ImageRef.parse(image).host, self.registries)

    def _common(self, spec: BuildSpec, authfile: Path | None) -> list[str]:
        flags = [f"--tls-verify={'false' if self._insecure(spec.image) else 'true'}"]
        return flags + (["--authfile", str(authfile)] if authfile else [])

    def bud_argv(self, spec: BuildSpec, authfile: Path | None = None, labelled: Path | None = None) -> list[str]:
        """``labelled``: a Dockerfile that already carries ``spec.labels`` (else they go as flags)."""
        argv = [*self._base(), "bud", "--isolation", "chroot", "--layers", "--force-rm",
                *self._common(spec, authfile), "-f", str(labelled or spec.dockerfile)]
        for key, value in sorted(spec.build_args.items()):
            argv += ["--build-arg", f"{key}={value}"]
        for key, value in sorted(spec.labels.items()) if labelled is None else ():
            argv += ["--label", f"{key}={value}"]
        for key, value in sorted(spec.annotations.items()):
            argv += ["--annotation", f"{key}={value}"]
        argv += ["--target", spec.target] if spec.target else []
        for tag in spec.tags:
            argv += ["-t", f"{spec.image}:{tag}"]
        return [*argv, str(spec.context)]

    @contextlib.contextmanager
    def _labelled(self, spec: BuildSpec) -> Iterator[Path | None]:
        """A copy of the Dockerfile ending in one ``LABEL`` instruction, outside the context (so
        ``COPY .`` never sees it), with its ignore files beside it; None: use flags."""
        text = self._dockerfile_text(spec) if spec.labels else None
        if text is None:
            yield None
            return
        with self._private_dir("dockerfile-") as private:
            path = Path(private) / spec.dockerfile.name
            path.write_text(text)
            for ignore in ignore_files(spec.dockerfile):
                shutil.copyfile(ignore, path.with_name(ignore.name))
            yield path

    def _built(self, spec: BuildSpec) -> BuildSpec:
        """What ``bud`` builds for ``spec``: without its OCI keys when the push sets them."""
        return spec if self.push_tool is None else dataclasses.replace(spec, labels={}, annotations={})

    def _taken(self, prestarted: PrestartedBud, spec: BuildSpec) -> str | None:
        """The Dockerfile to give ``prestarted`` when it builds ``spec``; else None, and it is stopped."""
        text = self._dockerfile_text(spec)
        if text is None or not prestarted.fits(spec):
            prestarted.close("the commit's build differs from the one it was started for")
            return None
        return text

    @staticmethod
    def _dockerfile_text(spec: BuildSpec) -> str | None:
        """The Dockerfile, with ``spec.labels`` as one appended ``LABEL``; None: it cannot be read,
        or the labels must go as flags."""
        try:
            text = spec.dockerfile.read_text()
        except (OSError, UnicodeDecodeError):
            return None
        return with_labels(text, spec.labels, spec.target) if spec.labels else text

    def _private_dir(self, prefix: str) -> tempfile.TemporaryDirectory[str]:
        parent = self.state_dir / "buildah"
        parent.mkdir(parents=True, exist_ok=True)
        return tempfile.TemporaryDirectory(prefix=prefix, dir=parent)

    def _bud_prestarted(self, spec: BuildSpec, prestarted: PrestartedBud, dockerfile: str, log: Path,
                        should_continue: Callable[[], bool]) -> None:
        try:
            with _bud_limits(spec, log):
                prestarted.feed(dockerfile, ignore_files(spec.dockerfile), spec.timeout_seconds)
                code = prestarted.process.wait(spec.timeout_seconds, should_continue)
        finally:
            prestarted.close()
        self._bud_ended(code, log)

    def _bud(self, spec: BuildSpec, authfile: Path | None, log: Path, should_continue: Callable[[], bool],
             labelled: Path | None = None) -> None:
        with _bud_limits(spec, log):
            code = run_logged(self.bud_argv(spec, authfile, labelled), log=log, timeout=spec.timeout_seconds,
                              should_continue=should_continue)
        self._bud_ended(code, log)

    @staticmethod
    def _bud_ended(code: int, log: Path) -> None:
        if code != 0:
            tail = _tail(log)
            if _GLITCH.search(log_tail(tail, 4)):
                raise BuilderGlitch(f"buildah bud exited {code} on a host error, not the Dockerfile's: "
                                    f"{_GLITCH.pattern}; the build is retried")
            raise BuildFailed(f"buildah bud exited {code}", tail=tail)

    def _push_all(self, spec: BuildSpec, authfile: Path | None, log: Path,
                  should_continue: Callable[[], bool]) -> str:
        digests = {self._push(spec, tag, authfile, log, should_continue) for tag in spec.tags}
        if len(digests) != 1:
            raise RegistryUnavailable(f"tags of {spec.image} were pushed with different digests: {sorted(digests)}")
        return digests.pop()

    def _push(self, spec: BuildSpec, tag: str, authfile: Path | None, log: Path,
              should_continue: Callable[[], bool]) -> str:
        ref = f"{spec.image}:{tag}"
        digestfile = log.with_name(f"{log.stem}.{tag}.digest")
        argv = [*self._push_command(spec), *self._common(spec, authfile), "--digestfile", str(digestfile),
                ref, f"docker://{ref}"]
        try:
            code = run_logged(argv, log=log, timeout=PUSH_TIMEOUT_SECONDS, should_continue=should_continue)
        except ProcessTimedOut as exc:
            raise RegistryUnavailable(f"push of {ref} exceeded {PUSH_TIMEOUT_SECONDS:g}s") from exc
        if code != 0:
            tail = log_tail(_tail(log), 4)
            error = PushDenied if _DENIED.search(tail) else RegistryUnavailable
            raise error(f"push of {ref} failed (exit {code}):\n{tail}")
        return digestfile.read_text().strip()

    def _push_command(self, spec: BuildSpec) -> list[str]:
        """``buildah push``, or ``shipline-push`` with the storage's flags and the OCI keys."""
        if self.push_tool is None:
            return [*self._base(), "push"]
        argv = [str(self.push_tool), *self._base()[1:]]
        for flag, pairs in (("--label", spec.labels), ("--annotation", spec.annotations)):
            for key, value in sorted(pairs.items()):
                argv += [flag, f"{key}={value}"]
        return argv

    @contextlib.contextmanager
    def _authfile(self) -> Iterator[Path | None]:
        auths = {r.host: _auth_entry(r) for r in self.registries if r.username and r.password}
        if not auths:
            yield None
            return
        with self._private_dir("auth-") as private:
            path = Path(private) / "auth.json"
            path.touch(mode=0o600)
            path.write_text(json.dumps({"auths": auths}))
            yield path


def _auth_entry(config: RegistryConfig) -> dict[str, str]:
    creds = credentials(config)
    assert creds is not None
    return {"auth": base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()}


@contextlib.contextmanager
def _bud_limits(spec: BuildSpec, log: Path) -> Iterator[None]:
    """A ``bud`` stopped past ``spec``'s time limit, as ``BuildTimeout``."""
    try:
        yield
    except ProcessTimedOut as exc:
        why = f"timeout: build exceeded {spec.timeout_seconds:g}s; its processes were killed"
        raise BuildTimeout(why, tail=_tail(log)) from exc


def _committed(spec: BuildSpec, log: Path, start: int) -> bool:
    """Whether the bud logged from ``start`` committed the image itself, rather than tagging an
    image its cache held: buildah logs ``COMMIT <first tag>`` either way, right after ``--> Using
    cache <id>`` when its last step was a cache hit."""
    with log.open("rb") as handle:
        handle.seek(start)
        lines = handle.read().decode(errors="replace").splitlines()
    commit = f"COMMIT {spec.image}:{spec.tags[0]}"
    cached = (i > 0 and lines[i - 1].startswith("--> Using cache") for i in range(len(lines)))
    return any(line == commit and not hit for line, hit in zip(lines, cached, strict=True))


def _tail(log: Path) -> str:
    return log_tail(log.read_text(errors="replace"))
