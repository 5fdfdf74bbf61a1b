"""Shipline's own image, built from the repository's ``Dockerfile`` and pushed to the stack's registry.

The Dockerfile's ``BASE``, ``KUBECTL``, ``HELM`` and ``PUSH`` build arguments point at the offline bases of
``devstack.debianbase``; the build is ``buildah bud --isolation chroot`` on the stack's buildah
storage (the same layout as every other build here). No ``--layers``: the test stack's storage is
new each session, so a layer cache would never be read, and committing every step costs a copy of
the venv on vfs. Deploying Shipline onto a cluster of the stack starts from ``ShiplineImage``.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from devstack.baseimage import buildah_argv
from devstack.debianbase import (
    REPO_ROOT,
    push,
    push_debian_base,
    push_helm_image,
    push_kubectl_image,
    push_push_tool_image,
)
from devstack.process import StackError

REPOSITORY = "shipline/shipline"
BUILD_TIMEOUT = 1800
"""pip downloads and installs the pinned dependencies: a few minutes on a slow link."""
RUNTIME_UID = 10001
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
"""Bound over the base's own bundle for ``RUN`` steps only (never committed; the local base has
ca-certificates already, so no step rewrites it): pip trusts what the host trusts, a
TLS-intercepting egress proxy included."""


class _Registry(Protocol):
    @property
    def host(self) -> str: ...


class StackLike(Protocol):
    """What the build needs of ``devstack.stack.Stack``: its state dir and its registry."""

    @property
    def state_dir(self) -> Path: ...

    @property
    def registry(self) -> _Registry: ...


@dataclass(frozen=True)
class ShiplineImage:
    repository: str
    """``<registry>/shipline/shipline``"""
    tag: str
    digest: str
    base: str
    """The ``BASE`` build argument used (the local Debian base)."""
    build_seconds: float
    started_at: float
    """``time.time()`` when the build began: files of the context changed later are not in it."""

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"

    @property
    def pinned(self) -> str:
        """``repository@sha256:...``: what a manifest should run."""
        return f"{self.repository}@{self.digest}"


def _host_ca() -> list[str]:
    if not HOST_CA_BUNDLE.is_file():
        return []
    return ["--volume", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"]


def build_shipline_image(stack: StackLike, *, tag: str = "dev") -> ShiplineImage:
    """Build the Dockerfile on the local bases and push it; returns where it is."""
    state_dir, host = stack.state_dir, stack.registry.host
    base = push_debian_base(state_dir, host)
    kubectl = push_kubectl_image(state_dir, host)
    helm = push_helm_image(state_dir, host)
    pusher = push_push_tool_image(state_dir, host)
    ref = f"{host}/{REPOSITORY}:{tag}"
    log = state_dir / "run" / "shipline-image.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = [*buildah_argv(state_dir), "bud", "--isolation", "chroot", "--tls-verify=false",
            "--build-arg", f"BASE={base}", "--build-arg", f"KUBECTL={kubectl}",
            "--build-arg", f"HELM={helm}", "--build-arg", f"PUSH={pusher}", *_host_ca(),
            "-f", str(REPO_ROOT / "Dockerfile"), "-t", ref, str(REPO_ROOT)]
    started_at, start = time.time(), time.monotonic()
    with log.open("w") as out:
        try:
            done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise StackError(f"building {ref} took over {BUILD_TIMEOUT}s; log: {log}") from None
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise StackError(f"building {ref} failed ({done.returncode}); log: {log}\n{tail}")
    seconds = time.monotonic() - start
    digest = push(state_dir, ref)
    return ShiplineImage(repository=ref.rsplit(":", 1)[0], tag=tag, digest=digest, base=base,
                         build_seconds=seconds, started_at=started_at)
