"""The offline base image: ``<registry>/base/busybox`` built with buildah from Debian's busybox-static.

Nothing can be pulled from the internet here, so every test Dockerfile starts ``FROM`` this image.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from devstack.process import StackError, require_binary

BUSYBOX = Path("/bin/busybox")
INSTALL_HINT = "install it with: apt-get install busybox-static buildah"
BASE_REPOSITORY = "base/busybox"


def buildah_argv(state_dir: Path, driver: str = "vfs") -> list[str]:
    """buildah with storage under the state dir (vfs works as root without fuse)."""
    binary = require_binary("buildah", INSTALL_HINT)
    return [
        str(binary), "--root", str(state_dir / "buildah" / "storage"),
        "--runroot", str(state_dir / "buildah" / "run"), "--storage-driver", driver,
    ]


def _rootfs(workdir: Path) -> Path:
    if not BUSYBOX.exists():
        raise StackError(f"{BUSYBOX} not found: {INSTALL_HINT}")
    listing = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True)
    if "sh" not in listing.stdout.split():
        raise StackError(f"{BUSYBOX} is not the static busybox with applets: {INSTALL_HINT}")
    rootfs = workdir / "rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    for sub in ("bin", "tmp", "etc", "root"):
        (rootfs / sub).mkdir(parents=True)
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    for applet in listing.stdout.split():
        if applet != "busybox" and "/" not in applet:
            (rootfs / "bin" / applet).symlink_to("busybox")
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    return rootfs


def build_base_image(state_dir: Path, registry_host: str) -> str:
    """Build and push the base image; idempotent (re-pushing the same layers is cheap)."""
    workdir = state_dir / "baseimage"
    workdir.mkdir(parents=True, exist_ok=True)
    _rootfs(workdir)
    (workdir / "Dockerfile").write_text('FROM scratch\nCOPY rootfs/ /\nCMD ["/bin/sh"]\n')
    ref = f"{registry_host}/{BASE_REPOSITORY}:latest"
    buildah = buildah_argv(state_dir)
    for argv in (
        [*buildah, "bud", "--isolation", "chroot", "--layers", "-t", ref, str(workdir)],
        [*buildah, "push", "--tls-verify=false", ref, f"docker://{ref}"],
    ):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise StackError(f"base image step failed: {' '.join(argv[-4:])}\n{done.stderr[-2000:]}")
    return ref
