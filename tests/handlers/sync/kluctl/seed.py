"""The test kluctl project (``tests/kluctl/seed-project``) and helpers to render it, or a copy of it
changed for a test."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path
from typing import Any

from handlers.settings import EnvironmentConfig
from handlers.sync.objects import Obj

SEED = Path(__file__).resolve().parents[3] / "kluctl" / "seed-project"
GOLDEN = Path(__file__).resolve().parents[3] / "golden" / "kluctl"


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


def put(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def by_name(objects: list[Obj]) -> dict[str, Obj]:
    """``Kind/name`` → object."""
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in objects}
