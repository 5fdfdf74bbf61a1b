"""Install what the local stack needs from Debian, only when something is missing (idempotent)."""

from __future__ import annotations

import os
import shutil
import subprocess

from devstack.process import StackError

# binary -> Debian package
REQUIRED = {
    "redis-server": "redis-server",
    "docker-registry": "docker-registry",
    "buildah": "buildah",
    "busybox": "busybox-static",
    "git": "git",
}


def missing_packages() -> list[str]:
    missing = [pkg for binary, pkg in REQUIRED.items() if shutil.which(binary) is None]
    if shutil.which("busybox") and "sh" not in _busybox_applets():
        missing.append("busybox-static")
    return sorted(set(missing))


def _busybox_applets() -> list[str]:
    done = subprocess.run(["busybox", "--list"], capture_output=True, text=True)
    return done.stdout.split()


def ensure_installed() -> list[str]:
    """apt-get install whatever is missing; returns what was installed."""
    missing = missing_packages()
    if not missing:
        return []
    if os.geteuid() != 0:
        raise StackError(f"missing packages {missing}: run 'sudo apt-get install -y {' '.join(missing)}'")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
                   check=True, env=env)
    return missing
