"""The Git half of a sync: find an environment's branch head, check it out only when needed, and
hand it to ``handlers.sync`` with this process's cache of the environment's cluster."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from handlers.errors import TransientError
from handlers.gitops import ManifestsRepo
from handlers.settings import EnvironmentConfig
from handlers.sync.reconcile import SyncResult, sync_environment
from handlers.validate import validate_sha
from service.livestate import cache_for

HEAD_TTL_SECONDS = 2.0
"""Environments on one manifests repo and branch share one ``git ls-remote`` within this window."""
LS_REMOTE_TIMEOUT = 30
_heads: dict[tuple[str, str], tuple[float, str]] = {}
_heads_lock = threading.Lock()


def remote_head(url: str, branch: str, *, pushed: str | None = None) -> str:
    """The commit ``branch`` points at in ``url`` (one ``git ls-remote``, shared for a moment).

    ``pushed``: a commit Shipline itself just pushed there; a shared answer that is not it is
    older than the push, so the remote is asked again."""
    key = (url, branch)
    with _heads_lock:
        hit = _heads.get(key)
        if hit is not None and time.monotonic() - hit[0] < HEAD_TTL_SECONDS and pushed in (None, hit[1]):
            return hit[1]
    try:
        done = subprocess.run(["git", "ls-remote", "--", url, f"refs/heads/{branch}"], capture_output=True, text=True,
                              timeout=LS_REMOTE_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise TransientError(f"{url}: git ls-remote timed out after {LS_REMOTE_TIMEOUT}s") from None
    if done.returncode != 0:
        raise TransientError(f"{url}: git ls-remote failed: {done.stderr.strip()[-500:]}")
    line = next((x for x in done.stdout.splitlines() if x.endswith(f"\trefs/heads/{branch}")), "")
    if not line:
        raise TransientError(f"{url}: branch {branch!r} not found")
    sha = validate_sha(line.split("\t")[0])
    with _heads_lock:
        _heads[key] = (time.monotonic(), sha)
    return sha


def checkout(env: EnvironmentConfig, state_dir: Path) -> tuple[Path, str]:
    """A clean working copy of ``env.git`` at its branch head (fetched, not re-cloned)."""
    repo = ManifestsRepo(env.git.url, env.git.branch, state_dir / "sync-checkouts" / env.name)
    repo.sync()
    return repo.workdir, repo.repo.head.commit.hexsha


def sync_now(env: EnvironmentConfig, state_dir: Path, *, correct_drift: bool | None = None,
             pushed: str | None = None) -> SyncResult:
    """Sync ``env`` to its branch head (checked out only if the sync needs the files); ``pushed``:
    the last commit Shipline pushed to that branch, if it knows one."""
    revision = remote_head(env.git.url, env.git.branch, pushed=pushed)
    holder: dict[str, str] = {}

    def files() -> Path:
        path, head = checkout(env, state_dir)
        holder["revision"] = head
        return path

    cache = cache_for(env.cluster)
    result = sync_environment(env, files, revision, cache=cache, correct_drift=correct_drift)
    if holder.get("revision", revision) != revision:  # the branch moved between ls-remote and fetch
        result = sync_environment(env, Path(state_dir / "sync-checkouts" / env.name), holder["revision"],
                                  cache=cache, correct_drift=correct_drift)
    return result


def status_of(result: SyncResult, cluster: str) -> dict[str, Any]:
    """The status dict the API and dashboard show."""
    health = result.health
    summary = (f"{result.revision[:10]}: applied {len(result.applied)}, pruned {len(result.pruned)}, "
               f"unchanged {result.unchanged}, drift {len(result.drift)}; {health.status}")
    return {
        "revision": result.revision, "images": list(result.images), "health": health.status, "reason": health.reason,
        "drift": [d.to_dict() for d in result.drift], "applied": [str(r) for r in result.applied],
        "pruned": [str(r) for r in result.pruned], "unchanged": result.unchanged, "objects": result.objects,
        "rendered": result.rendered, "last_sync": time.time(), "duration": result.duration,
        "applied_seconds": result.applied_seconds, "summary": summary, "warnings": list(result.warnings),
        "cluster": cluster,
    }


def diff_now(env: EnvironmentConfig, state_dir: Path) -> list[str]:
    """What a sync would change now (server-side dry run), one line per object or field."""
    path, revision = checkout(env, state_dir)
    result = sync_environment(env, path, revision, dry_run=True)
    lines = [f"~ {ref}" for ref in result.applied] + [f"- {ref}" for ref in result.pruned]
    lines += [f"  drift {d}" for d in result.drift]
    return lines
