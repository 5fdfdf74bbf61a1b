"""The worker's build-cache janitor: prunes with the configured ``keep`` and own images, at most
once per interval, and not at all for the Job backend or with ``cache_keep: null``."""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import REGISTRY

from handlers.build.builder import BuildahBuilder, PruneResult
from handlers.build.cache import BuildIndex
from handlers.build.workspace import checkout_dir
from handlers.settings import BuildSettings, RepoConfig
from service.buildcache import BuildCacheJanitor


def config(tmp_path: Path, **build: Any) -> Any:
    repo = RepoConfig.model_validate({"name": "shop", "url": "http://git.example/shop.git", "images": [
        {"name": "reg.example/shop/frontend", "context": "frontend"},
        {"name": "reg.example/shop/backend", "context": "backend"}]})
    return SimpleNamespace(build=BuildSettings.model_validate(build), state_dir=tmp_path, registries=[], repos=[repo])


@pytest.fixture
def prunes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[str], int]]:
    calls: list[tuple[list[str], int]] = []

    def fake(self: BuildahBuilder, own: list[str], keep: int, *,
             busy_spare_seconds: float | None = None) -> PruneResult:
        calls.append((list(own), keep))
        return PruneResult(before=3, after=2)

    monkeypatch.setattr(BuildahBuilder, "prune", fake)
    return calls


def test_a_storage_busy_for_ten_minutes_is_pruned_sparing_what_running_builds_made(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[float | None] = []

    def busy(self: BuildahBuilder, own: list[str], keep: int, *,
             busy_spare_seconds: float | None = None) -> PruneResult | None:
        asked.append(busy_spare_seconds)
        return None if busy_spare_seconds is None else PruneResult(before=9, after=7, busy=True)

    monkeypatch.setattr(BuildahBuilder, "prune", busy)
    now = [0.0]
    janitor = BuildCacheJanitor(config(tmp_path, timeout_seconds=900), interval=60, clock=lambda: now[0])
    for _ in range(9):  # every minute for nine minutes, a build holds the storage
        now[0] += 60
        assert janitor.tick() is None
    now[0] += 60
    assert janitor.tick() == PruneResult(before=9, after=7, busy=True)
    now[0] += 60
    janitor.tick()
    assert asked == [None] * 9 + [960, None], "ten minutes: prune, sparing the build time limit + 60 s"


def test_prunes_every_configured_image_at_most_once_per_interval(tmp_path: Path,
                                                                  prunes: list[tuple[list[str], int]]) -> None:
    now = [1000.0]
    janitor = BuildCacheJanitor(config(tmp_path, cache_keep=4), interval=60, clock=lambda: now[0])
    assert janitor.tick() == PruneResult(before=3, after=2)
    now[0] += 59
    assert janitor.tick() is None
    now[0] += 2
    janitor.tick()
    assert prunes == [(["reg.example/shop/backend", "reg.example/shop/frontend"], 4)] * 2
    assert REGISTRY.get_sample_value("shipline_build_storage_images") == 2


def test_an_image_built_before_but_no_longer_configured_is_pruned_too(tmp_path: Path,
                                                                      prunes: list[tuple[list[str], int]]) -> None:
    BuildIndex(tmp_path).put(image="reg.example/shop/old-name", key="k" * 64, digest="sha256:" + "0" * 64,
                             tag="abc1234", sha="a" * 40)
    BuildCacheJanitor(config(tmp_path)).tick()
    assert prunes == [(["reg.example/shop/backend", "reg.example/shop/frontend", "reg.example/shop/old-name"], 10)]


@pytest.mark.parametrize("build", [{"cache_keep": None}, {"backend": "job", "job": {"image": "reg.example/b:1"}}])
def test_no_prune_without_a_local_storage_or_a_limit(tmp_path: Path, prunes: list[tuple[list[str], int]],
                                                     build: dict[str, Any]) -> None:
    assert BuildCacheJanitor(config(tmp_path, **build)).tick() is None
    assert prunes == []


@pytest.mark.parametrize("backend", [{}, {"backend": "job", "job": {"image": "reg.example/b:1"}}])
def test_build_logs_past_their_days_go_and_running_records_stay(tmp_path: Path, prunes: list[tuple[list[str], int]],
                                                                backend: dict[str, Any]) -> None:
    logs = tmp_path / "build-logs" / "shop"
    (logs / ".running").mkdir(parents=True)
    old, new, digest = logs / "abc-old.log", logs / "def-new.log", logs / "abc-old.main.digest"
    record = logs / ".running" / "4242.json"
    for path in (old, new, digest, record):
        path.write_text("x")
    month_ago = time.time() - 31 * 86400
    for path in (old, digest, record):
        os.utime(path, (month_ago, month_ago))
    BuildCacheJanitor(config(tmp_path, log_keep_days=30, **backend)).tick()
    assert (old.exists(), digest.exists(), new.exists(), record.exists()) == (False, False, True, True)
    os.utime(new, (month_ago, month_ago))
    BuildCacheJanitor(config(tmp_path, log_keep_days=None)).tick()
    assert new.exists(), "log_keep_days: null keeps every log"


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_the_tick_maintains_the_build_mirrors_whatever_the_backend(tmp_path: Path) -> None:
    mirror = tmp_path / "mirrors" / "shop.git"
    mirror.mkdir(parents=True)
    git(mirror, "init", "-q", "--bare")
    for key, value in (("receive.unpackLimit", "1"), ("receive.autogc", "false"), ("gc.autoPackLimit", "2"),
                       ("gc.autoDetach", "false")):
        git(mirror, "config", key, value)
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q")
    for n in range(3):  # one pack kept per push
        (work / "f").write_text(str(n))
        git(work, "add", "f")
        git(work, "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-qm", str(n))
        git(work, "push", "-q", str(mirror), "HEAD:refs/heads/main")
    assert len(list((mirror / "objects" / "pack").glob("*.pack"))) == 3
    BuildCacheJanitor(config(tmp_path, backend="job", job={"image": "reg.example/b:1"})).tick()
    assert len(list((mirror / "objects" / "pack").glob("*.pack"))) == 1


def test_the_tick_removes_the_kept_checkouts_of_images_no_longer_configured(tmp_path: Path) -> None:
    configured = checkout_dir(tmp_path, "shop", "reg.example/shop/frontend")
    renamed = checkout_dir(tmp_path, "shop", "reg.example/shop/old-name")
    gone_repo = checkout_dir(tmp_path, "gone", "reg.example/gone/app")
    held = checkout_dir(tmp_path, "shop", "reg.example/shop/building")
    for where in (configured, renamed, gone_repo, held):
        (where / "tree").mkdir(parents=True)
        (where / "tree" / "f").write_text("x")
    with open(held / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a build still using it, whatever the config says now
        BuildCacheJanitor(config(tmp_path)).tick()
    assert (configured / "tree" / "f").exists() and (held / "tree" / "f").exists()
    assert not renamed.exists() and not gone_repo.exists() and not gone_repo.parent.exists()
