"""``build.backend: job``: each image is built by a Kubernetes Job (``handlers.build.jobspec``).

The ``Builder`` contract holds: push every tag or none, return the digest, raise ``BuildFailed``
/ ``BuildTimeout`` / ``PushDenied`` (permanent), ``RegistryUnavailable`` / ``GitUnavailable`` /
``ClusterUnavailable`` (transient) or ``Superseded``.

- One Job per build, found again by its ``shipline.dev/build`` label: a build whose worker was
  killed is redelivered and *adopts* the Job still running (or finished within its TTL) instead
  of building a second image. A failed Job is deleted and a new one created.
- The pod's log is streamed into the build log as it runs; the digest is the container's
  termination message (checked to be a ``sha256:`` digest).
- ``should_continue`` turning false deletes the Job (its pod goes with it) and raises
  ``Superseded``. The Job's ``activeDeadlineSeconds`` is the build timeout; Shipline waits
  ``SCHEDULING_GRACE_SECONDS`` longer for the Job's own verdict, then deletes it.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.rest import ApiException

from handlers.build.builder import BuildSpec, BuiltImage
from handlers.build.errors import (
    BuildFailed,
    BuildTimeout,
    GitUnavailable,
    PushDenied,
    RegistryUnavailable,
    Superseded,
    log_tail,
)
from handlers.build.jobspec import (
    BUILD_LABEL,
    CONTAINER,
    EXIT_BUILD,
    EXIT_GIT,
    EXIT_PUSH,
    EXIT_PUSH_DENIED,
    job_manifest,
)
from handlers.errors import PermanentError, TransientError
from handlers.settings import JobBuildSettings, RegistryConfig
from handlers.sync.kubeapi import kube_client

POLL_SECONDS = 0.5
SCHEDULING_GRACE_SECONDS = 120.0
"""Past the Job's own deadline: time for the Job controller to mark it failed."""
API_OUTAGE_SECONDS = 30.0
"""How long the apiserver may be unreachable during a build before the attempt is given up (the
Job keeps running; the redelivered build adopts it)."""
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class ClusterUnavailable(TransientError):
    """The build cluster's API could not be reached or answered 5xx."""


class JobBuilder:
    """Builds in Jobs of ``settings.namespace`` on ``settings.cluster``."""

    def __init__(self, *, settings: JobBuildSettings, registries: list[RegistryConfig]) -> None:
        self.settings = settings
        self.registries = registries

    def build(self, spec: BuildSpec, *, log: Path, should_continue: Callable[[], bool]) -> BuiltImage:
        manifest = job_manifest(spec, self.settings, self.registries)
        with kube_client(self.settings.cluster) as api:
            run = _JobRun(api, self.settings.namespace, manifest, log, self.settings.cluster)
            run.start()
            digest = run.wait(deadline=time.monotonic() + spec.timeout_seconds + SCHEDULING_GRACE_SECONDS,
                              timeout=spec.timeout_seconds, should_continue=should_continue)
        return BuiltImage(spec.image, spec.tags, digest)


class _JobRun:
    """One build's Job, from create-or-adopt to its verdict."""

    def __init__(self, api: client.ApiClient, namespace: str, manifest: dict[str, Any], log: Path,
                 cluster: Any) -> None:
        self.batch, self.core = client.BatchV1Api(api), client.CoreV1Api(api)
        self.namespace, self.manifest, self.log, self.cluster = namespace, manifest, log, cluster
        self.name = ""
        self.uid = ""
        self.streamer: _LogStreamer | None = None
        self.noted: set[str] = set()

    def start(self) -> None:
        key = self.manifest["metadata"]["labels"][BUILD_LABEL]
        jobs = _call(lambda: self.batch.list_namespaced_job(self.namespace, label_selector=f"{BUILD_LABEL}={key}"),
                     f"listing Jobs in {self.namespace}").items
        for job in sorted(jobs, key=lambda j: j.metadata.creation_timestamp):
            if _finished(job) == "Failed":
                self._delete(job.metadata.name)
            elif self.name == "":
                self.name, self.uid = job.metadata.name, job.metadata.uid
        if self.name:
            self.note(f"adopting Job {self.namespace}/{self.name} (started by an earlier attempt of this build)")
            return
        created = _call(lambda: self.batch.create_namespaced_job(self.namespace, self.manifest),
                        f"creating a Job in {self.namespace}")
        self.name, self.uid = created.metadata.name, created.metadata.uid
        self.note(f"created Job {self.namespace}/{self.name}")

    def wait(self, *, deadline: float, timeout: float, should_continue: Callable[[], bool]) -> str:
        outage_since: float | None = None
        try:
            while True:
                if not should_continue():
                    self._delete(self.name)
                    raise Superseded(f"a newer push arrived; Job {self.name} was deleted")
                try:
                    verdict = self._step()
                    outage_since = None
                except ClusterUnavailable:
                    outage_since = outage_since or time.monotonic()
                    if time.monotonic() - outage_since > API_OUTAGE_SECONDS:
                        raise
                    verdict = None
                if verdict is not None:
                    return self._result(verdict, timeout)
                if time.monotonic() > deadline:
                    self._delete(self.name)
                    raise BuildTimeout(f"timeout: Job {self.name} did not finish within {timeout:g}s "
                                       f"(+{SCHEDULING_GRACE_SECONDS:g}s); it was deleted", tail=self._tail())
                time.sleep(POLL_SECONDS)
        finally:
            if self.streamer is not None:
                self.streamer.join()

    def _step(self) -> str | None:
        job = _call(lambda: self.batch.read_namespaced_job(self.name, self.namespace), f"reading Job {self.name}")
        pod = self._pod()
        if pod is not None:
            self._watch_pod(pod)
        return _finished(job)

    def _pod(self) -> Any:
        pods = _call(lambda: self.core.list_namespaced_pod(
            self.namespace, label_selector=f"batch.kubernetes.io/controller-uid={self.uid}"), "listing pods").items
        return max(pods, key=lambda p: p.metadata.creation_timestamp, default=None)

    def _watch_pod(self, pod: Any) -> None:
        """Note why a pod waits (once per reason); start streaming its log once it runs."""
        for status in pod.status.container_statuses or []:
            waiting = status.state.waiting
            if waiting and waiting.reason and waiting.reason != "ContainerCreating":
                self.note(f"pod {pod.metadata.name} waiting: {waiting.reason}: {waiting.message or ''}".rstrip(": "))
            started = status.state.running or status.state.terminated
            if started and self.streamer is None:
                self.streamer = _LogStreamer(self.cluster, self.namespace, pod.metadata.name, self.log)
                self.streamer.start()
        for condition in pod.status.conditions or []:
            if condition.type == "PodScheduled" and condition.status == "False" and condition.message:
                self.note(f"pod {pod.metadata.name} not scheduled: {condition.message}")

    def _result(self, verdict: str, timeout: float) -> str:
        if self.streamer is not None:
            self.streamer.join()
        pod = self._pod()
        terminated = _terminated(pod)
        message = (terminated.message or "").strip() if terminated else ""
        if verdict == "Complete":
            if not DIGEST.match(message):
                raise BuildFailed(f"Job {self.name} succeeded without a digest (termination message "
                                  f"{message[:200]!r})", tail=self._tail())
            return message
        job = _call(lambda: self.batch.read_namespaced_job(self.name, self.namespace), f"reading Job {self.name}")
        reason = next((c.reason for c in job.status.conditions or [] if c.type == "Failed"), "")
        if reason == "DeadlineExceeded":
            raise BuildTimeout(f"timeout: build exceeded {timeout:g}s (the Job's activeDeadlineSeconds); "
                               f"Kubernetes stopped its pod", tail=self._tail())
        raise _failure(terminated.exit_code if terminated else None, message or reason, self._tail())

    def _delete(self, name: str) -> None:
        try:
            self.batch.delete_namespaced_job(name, self.namespace, propagation_policy="Background")
        except ApiException as exc:
            if exc.status != 404:
                raise _wrap(exc, f"deleting Job {name}") from None
        except urllib3.exceptions.HTTPError as exc:
            raise ClusterUnavailable(f"deleting Job {name}: {exc}") from None

    def note(self, line: str) -> None:
        if line in self.noted:
            return
        self.noted.add(line)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("a") as out:
            out.write(f"# {line}\n")

    def _tail(self) -> str:
        return log_tail(self.log.read_text(errors="replace")) if self.log.exists() else ""


class _LogStreamer(threading.Thread):
    """Follows one pod's build container log into the build log until the container exits."""

    def __init__(self, cluster: Any, namespace: str, pod: str, log: Path) -> None:
        super().__init__(name=f"joblog-{pod}", daemon=True)
        self.cluster, self.namespace, self.pod, self.log = cluster, namespace, pod, log

    def run(self) -> None:
        try:
            with kube_client(self.cluster) as api, self.log.open("ab") as out:
                core = client.CoreV1Api(api)
                stream = core.read_namespaced_pod_log(self.pod, self.namespace, container=CONTAINER, follow=True,
                                                      _preload_content=False)
                for chunk in stream.stream(4096):
                    out.write(chunk)
                    out.flush()
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            with self.log.open("a") as out:
                out.write(f"# log stream of pod {self.pod} ended early: {type(exc).__name__}\n")

    def join(self, timeout: float | None = 15.0) -> None:
        super().join(timeout)


def _finished(job: Any) -> str | None:
    for condition in job.status.conditions or []:
        if condition.type in ("Complete", "Failed") and condition.status == "True":
            return str(condition.type)
    return None


def _terminated(pod: Any) -> Any:
    for status in (pod.status.container_statuses or []) if pod is not None else []:
        if status.name == CONTAINER and status.state.terminated:
            return status.state.terminated
    return None


def _failure(code: int | None, message: str, tail: str) -> Exception:
    if code == EXIT_GIT:
        return GitUnavailable(f"the build pod could not fetch the source: {message}")
    if code == EXIT_PUSH:
        return RegistryUnavailable(f"the build pod could not push: {message}")
    if code == EXIT_PUSH_DENIED:
        return PushDenied(message)
    if code == EXIT_BUILD:
        return BuildFailed(message, tail=tail)
    return BuildFailed(f"build Job failed (exit {code}): {message}", tail=tail)


def _call(fn: Callable[[], Any], what: str) -> Any:
    try:
        return fn()
    except ApiException as exc:
        raise _wrap(exc, what) from None
    except urllib3.exceptions.HTTPError as exc:
        raise ClusterUnavailable(f"{what}: {exc}") from None


def _wrap(exc: ApiException, what: str) -> Exception:
    status = exc.status or 0
    if status >= 500 or status in (0, 429):
        return ClusterUnavailable(f"{what}: {status} {exc.reason}")
    hint = {403: " (the worker's ServiceAccount needs jobs, pods and pods/log there)",
            404: " (does the namespace exist?)"}.get(status, "")
    return PermanentError(f"{what}: {status} {exc.reason}{hint}")
