"""The Git half of a sync: check out an environment's branch head, then hand it to ``handlers.sync``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from handlers.gitops import ManifestsRepo
from handlers.settings import EnvironmentConfig


def checkout(env: EnvironmentConfig, state_dir: Path) -> tuple[Path, str]:
    """A clean working copy of ``env.git`` at its branch head (fetched, not re-cloned)."""
    repo = ManifestsRepo(env.git.url, env.git.branch, state_dir / "sync-checkouts" / env.name)
    repo.sync()
    return repo.workdir, repo.repo.head.commit.hexsha


def sync_target(env: EnvironmentConfig, state_dir: Path) -> dict[str, Any]:
    """Sync ``env`` to its branch head; the status dict the API and dashboard show."""
    from handlers.sync.reconcile import sync_environment

    path, revision = checkout(env, state_dir)
    result = sync_environment(env, path, revision).to_dict()
    health = result["health"]
    summary = (f"{revision[:10]}: applied {len(result['applied'])}, pruned {len(result['pruned'])}, "
               f"unchanged {result['unchanged']}, drift {len(result['drift'])}; {health['status']}")
    return {
        "revision": revision, "images": result["images"], "health": health["status"],
        "reason": health.get("reason", ""), "drift": result["drift"], "applied": result["applied"],
        "pruned": result["pruned"], "last_sync": time.time(), "duration": result["duration"],
        "summary": summary, "warnings": result["warnings"],
    }


def diff_target(env: EnvironmentConfig, state_dir: Path) -> list[str]:
    """What a sync would change now (server-side dry run), one line per object or field."""
    from handlers.sync.reconcile import sync_environment

    path, revision = checkout(env, state_dir)
    result = sync_environment(env, path, revision, dry_run=True).to_dict()
    lines = [f"~ {ref}" for ref in result["applied"]] + [f"- {ref}" for ref in result["pruned"]]
    lines += [f"  drift {d}" for d in result["drift"]]
    return lines
