"""The offline bases of Shipline's own image, in the stack's registry.

Nothing can be pulled from Docker Hub or registry.k8s.io here, so the Dockerfile's three ``FROM``
build arguments point at local stand-ins built from the same upstreams' sources:

* ``<registry>/base/debian:bookworm-<key>``: a minimal Debian bookworm root filesystem made by
  mmdebstrap from Debian's archive (``scripts/build-debian-base.sh``), with the runtime packages
  the Dockerfile would otherwise install;
* ``<registry>/base/kubectl:<version>-<key>``: ``/bin/kubectl`` built from its Go module
  (``scripts/build-kubectl.sh``), laid out like ``registry.k8s.io/kubectl``;
* ``<registry>/base/helm:<version>-<key>``: ``/usr/bin/helm`` built from its Go module
  (``scripts/build-helm.sh``, which bootstrap runs), laid out like ``alpine/helm``;
* ``<registry>/base/shipline-push:<key>``: ``/usr/local/bin/shipline-push`` built from its Go
  module (``scripts/build-push.sh``, which bootstrap runs).

The scripts cache their output in ``~/.cache/shipline/`` keyed by their inputs (built once per
machine); importing into buildah's storage and pushing is per stack and skipped when done.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from devstack.baseimage import buildah_argv
from devstack.process import StackError, cached_output

REPO_ROOT = Path(__file__).resolve().parents[1]
DEBIAN_SCRIPT = REPO_ROOT / "scripts" / "build-debian-base.sh"
KUBECTL_SCRIPT = REPO_ROOT / "scripts" / "build-kubectl.sh"
HELM_SCRIPT = REPO_ROOT / "scripts" / "build-helm.sh"
PUSH_SCRIPT = REPO_ROOT / "scripts" / "build-push.sh"
STEP_TIMEOUT = 600
DEBIAN_REPOSITORY = "base/debian"
KUBECTL_REPOSITORY = "base/kubectl"
HELM_REPOSITORY = "base/helm"
PUSH_REPOSITORY = "base/shipline-push"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def buildah(state_dir: Path, *args: str, timeout: float = STEP_TIMEOUT) -> str:
    """One buildah command on the stack's storage; its stdout, or ``StackError`` with stderr's tail."""
    argv = [*buildah_argv(state_dir), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise StackError(f"buildah {' '.join(args[:2])} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout.strip()


def has_image(state_dir: Path, ref: str) -> bool:
    argv = [*buildah_argv(state_dir), "inspect", "--type", "image", ref]
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


def import_image(state_dir: Path, ref: str, files: list[tuple[Path, str]], config: list[str]) -> None:
    """A one-layer image ``FROM scratch``: each local file added at its path (a tarball is
    unpacked there), then ``buildah config`` arguments, committed as ``ref``."""
    container = buildah(state_dir, "from", "scratch")
    try:
        for source, dest in files:
            buildah(state_dir, "add", container, str(source), dest)
        buildah(state_dir, "config", *config, container)
        buildah(state_dir, "commit", "--rm", container, ref)
    except BaseException:
        subprocess.run([*buildah_argv(state_dir), "rm", container], capture_output=True, check=False)
        raise


def push(state_dir: Path, ref: str) -> str:
    """Push ``ref`` to its (plain HTTP, local) registry; returns the pushed manifest's digest."""
    with tempfile.TemporaryDirectory(prefix="push-") as tmp:
        digest_file = Path(tmp) / "digest"
        buildah(state_dir, "push", "--tls-verify=false", "--digestfile", str(digest_file), ref, f"docker://{ref}")
        return digest_file.read_text().strip()


def push_debian_base(state_dir: Path, registry_host: str) -> str:
    """``<registry>/base/debian:bookworm-<key>``, imported once per stack; returns the reference."""
    tarball = cached_output(DEBIAN_SCRIPT, "needs root and mmdebstrap (apt-get install mmdebstrap)")
    ref = f"{registry_host}/{DEBIAN_REPOSITORY}:{tarball.parent.name}"
    if not has_image(state_dir, ref):
        import_image(state_dir, ref, [(tarball, "/")], ["--env", PATH_ENV, "--cmd", "bash"])
    push(state_dir, ref)
    return ref


def push_debian_derived(state_dir: Path, registry_host: str, *, repository: str, tag_prefix: str,
                        dockerfile: str) -> str:
    """``<registry>/<repository>:<tag_prefix><base tag>``: ``dockerfile`` (its ``{base}`` the stack's
    Debian base) built once per stack and pushed; returns the reference."""
    base = push_debian_base(state_dir, registry_host)
    ref = f"{registry_host}/{repository}:{tag_prefix}{base.rsplit(':', 1)[1]}"
    if not has_image(state_dir, ref):
        with tempfile.TemporaryDirectory(prefix="debian-derived-") as tmp:
            (Path(tmp) / "Dockerfile").write_text(dockerfile.format(base=base))
            buildah(state_dir, "bud", "--isolation", "chroot", "--tls-verify=false", "-t", ref, tmp, timeout=900)
    push(state_dir, ref)
    return ref


def push_tool_image(state_dir: Path, registry_host: str, *, script: Path, repository: str, binary: str,
                    hint: str) -> str:
    """``<registry>/<repository>:<cache dir name>`` holding the one binary ``script`` builds, at
    ``binary`` (where the upstream image has it), with it as the entrypoint; returns the reference."""
    directory = cached_output(script, hint)
    ref = f"{registry_host}/{repository}:{directory.name}"
    if not has_image(state_dir, ref):
        import_image(state_dir, ref, [(directory / Path(binary).name, binary)], ["--entrypoint", f'["{binary}"]'])
    push(state_dir, ref)
    return ref


def push_kubectl_image(state_dir: Path, registry_host: str) -> str:
    """``<registry>/base/kubectl:<version>-<key>`` with ``/bin/kubectl``."""
    return push_tool_image(state_dir, registry_host, script=KUBECTL_SCRIPT, repository=KUBECTL_REPOSITORY,
                           binary="/bin/kubectl", hint="needs Go >= 1.26 (see scripts/build-kubectl.sh)")


def push_helm_image(state_dir: Path, registry_host: str) -> str:
    """``<registry>/base/helm:<version>-<key>`` with ``/usr/bin/helm``."""
    return push_tool_image(state_dir, registry_host, script=HELM_SCRIPT, repository=HELM_REPOSITORY,
                           binary="/usr/bin/helm", hint="needs Go >= 1.26 (see scripts/build-helm.sh)")


def push_push_tool_image(state_dir: Path, registry_host: str) -> str:
    """``<registry>/base/shipline-push:<key>`` with ``/usr/local/bin/shipline-push``."""
    return push_tool_image(state_dir, registry_host, script=PUSH_SCRIPT, repository=PUSH_REPOSITORY,
                           binary="/usr/local/bin/shipline-push",
                           hint="needs Go >= 1.26, gcc and libc6-dev (see scripts/build-push.sh)")
