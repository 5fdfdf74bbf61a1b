"""``devstack.mounts``: a mount under a directory (as buildah's overlay storage leaves one) is found
and detached, so the directory can be removed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from devstack.mounts import mounts_below, unmount_below


def test_a_bind_mount_under_a_directory_is_detached(tmp_path: Path) -> None:
    home = tmp_path / "storage" / "overlay"
    home.mkdir(parents=True)
    subprocess.run(["mount", "--bind", str(home), str(home)], check=True)  # what containers/storage does
    inner = home / "layer with space" / "merged"
    inner.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(inner)], check=True)

    assert mounts_below(tmp_path) == [inner, home]
    assert unmount_below(tmp_path) == []
    assert mounts_below(tmp_path) == []
    shutil.rmtree(tmp_path / "storage")
