"""The test kluctl project (``tests/kluctl/seed-project``) and helpers to render it, or a copy of it
changed for a test."""

from __future__ import annotations

import re
import shutil
import textwrap
from pathlib import Path
from typing import Any

from handlers.settings import EnvironmentConfig
from handlers.sync.objects import Obj
from tests.webhook_fixtures import REPO_ROOT

SEED = REPO_ROOT / "tests" / "kluctl" / "seed-project"
GOLDEN = REPO_ROOT / "tests" / "golden" / "kluctl"


def kluctl_env(target: str | None = "staging", *, path: str = ".", args: dict[str, Any] | None = None,
               **extra: Any) -> EnvironmentConfig:
    return EnvironmentConfig.model_validate({
        "name": target or "default", "git": {"url": "http://127.0.0.1/unused.git", "path": path},
        "render": {"mode": "kluctl", "target": target, "args": args or {}}, **extra,
    })


def seed_copy(tmp_path: Path) -> Path:
    """A writable copy of the seed project (the checkout root)."""
    root = tmp_path / "checkout"
    shutil.copytree(SEED, root)
    return root


def seed_apart(tmp_path: Path, suffix: str) -> Path:
    """A copy of the seed project whose staging target deploys into namespaces of its own
    (``shop-staging-<suffix>``, ``edge-staging-<suffix>``) with a discriminator of its own: tests
    share one cluster, and the demo's environments use ``shop-staging`` too."""
    root = seed_copy(tmp_path)
    config = root / "config" / "staging.yaml"
    config.write_text(re.sub(r"(namespace: )(\S+)", rf"\1\2-{suffix}", config.read_text()))
    kluctl = root / ".kluctl.yaml"  # prune lists the target's objects cluster-wide by it
    kluctl.write_text(kluctl.read_text().replace('discriminator: "shop-', f'discriminator: "shop-{suffix}-'))
    return root


def put(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def by_name(objects: list[Obj]) -> dict[str, Obj]:
    """``Kind/name`` → object."""
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in objects}
