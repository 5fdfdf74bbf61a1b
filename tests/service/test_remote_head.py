"""The branch head a sync reads: one ``git ls-remote`` shared for a moment by the environments on
one branch, except right after Shipline pushed there (the sync after a bump must see the bump)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from service import syncrun

GIT = ["git", "-c", "user.name=T", "-c", "user.email=t@example.com"]


def commit(work: Path, text: str) -> str:
    (work / "file.txt").write_text(text)
    subprocess.run([*GIT, "-C", str(work), "commit", "-qam", text], check=True)
    subprocess.run(["git", "-C", str(work), "push", "-q", "origin", "HEAD:main"], check=True, capture_output=True)
    return subprocess.run(["git", "-C", str(work), "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()


def test_a_shared_head_is_reused_unless_a_newer_push_is_known(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(syncrun, "HEAD_TTL_SECONDS", 600.0)  # however slow the machine, still "a moment"
    remote, work = tmp_path / "remote.git", tmp_path / "work"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    subprocess.run(["git", "clone", "-q", str(remote), str(work)], check=True, capture_output=True)
    (work / "file.txt").write_text("0")
    subprocess.run(["git", "-C", str(work), "add", "file.txt"], check=True)
    first = commit(work, "1")
    url = f"file://{remote}"
    assert syncrun.remote_head(url, "main") == first

    second = commit(work, "2")

    assert syncrun.remote_head(url, "main") == first, "shared for HEAD_TTL_SECONDS: no second ls-remote"
    assert syncrun.remote_head(url, "main", pushed=second) == second, "a known newer push asks again"
    assert syncrun.remote_head(url, "main") == second, "and the fresh answer is shared"
