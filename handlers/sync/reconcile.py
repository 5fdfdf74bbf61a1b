"""One sync of one environment: render → apply (drift-aware) → prune → inventory → health.

Idempotent: a second sync of the same revision changes nothing (no resourceVersion moves).
``dry_run`` sends every write as ``dryRun=All``, writes no inventory and waits for no rollout
(health is then the current health of what exists).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client

from handlers.errors import PermanentError
from handlers.settings import EnvironmentConfig
from handlers.sync.apply import FIRST, Applier, Desired, Outcome, ordered
from handlers.sync.drift import Drift
from handlers.sync.health import Health, check_health, wait_healthy
from handlers.sync.inventory import Inventory, prune, read_inventory, stale, write_inventory
from handlers.sync.kubeapi import KubeApi, kube_client
from handlers.sync.objects import ObjRef, images_of
from handlers.sync.render import RenderError, render


class EmptyRender(PermanentError):
    """The render produced no objects while the inventory lists some: refused unless allow_empty."""


@dataclass(frozen=True)
class SyncResult:
    revision: str
    applied: tuple[ObjRef, ...]
    """Created or changed (including drift corrections); in dry-run: would be."""
    pruned: tuple[ObjRef, ...]
    unchanged: int
    drift: tuple[Drift, ...]
    health: Health
    images: tuple[str, ...]
    duration: float
    warnings: tuple[str, ...] = ()
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "revision": self.revision, "applied": [str(r) for r in self.applied],
            "pruned": [str(r) for r in self.pruned], "unchanged": self.unchanged,
            "drift": [d.to_dict() for d in self.drift], "health": self.health.to_dict(),
            "images": list(self.images), "duration": self.duration, "warnings": list(self.warnings),
            "dry_run": self.dry_run,
        }


def sync_environment(env: EnvironmentConfig, checkout: Path, revision: str, *,
                     api_client: client.ApiClient | None = None, dry_run: bool = False) -> SyncResult:
    """Make ``env``'s cluster match ``checkout / env.git.path`` at ``revision``.

    ``checkout`` is a local checkout at ``revision`` (the caller does the Git part). Raises
    ``RenderError``/``ApplyConflict``/``EmptyRender`` (permanent) or ``TransientError``.
    """
    began = time.monotonic()
    objects = ordered(render(env, checkout))
    api = KubeApi(api_client or kube_client(env.cluster))
    try:
        return _sync(api, env, objects, revision, dry_run, began)
    finally:
        if api_client is None:
            api.close()


def _sync(api: KubeApi, env: EnvironmentConfig, objects: list[dict[str, Any]], revision: str,
          dry_run: bool, began: float) -> SyncResult:
    previous = read_inventory(api, env)
    if not objects and previous and previous.objects and env.prune and not env.allow_empty:
        raise EmptyRender(f"{env.name}: the render produced no objects; refusing to prune the "
                          f"{len(previous.objects)} objects of revision {previous.revision} (set allow_empty)")
    applier = Applier.for_render(api, env, revision, objects, dry_run=dry_run,
                                 known={r.key for r in previous.objects} if previous else set())
    desired, outcomes = _apply_all(applier, objects)
    refs = [d.ref for d in desired]
    images = tuple(sorted({image for d in desired for image in images_of(d.body)}))
    pruning = stale(previous, refs) if env.prune else []
    if pruning and not dry_run:  # remember them until they are really gone
        write_inventory(api, env, Inventory(revision, (*refs, *pruning), images))
    pruned = prune(api, env, pruning, dry_run=dry_run)
    if not dry_run:
        write_inventory(api, env, Inventory(revision, tuple(refs), images))
    health = (check_health(api, refs, missing_ok=True) if dry_run
              else wait_healthy(api, refs, timeout=env.health_timeout))
    return SyncResult(
        revision=revision, applied=tuple(o.ref for o in outcomes if o.action in ("created", "configured")),
        pruned=pruned.pruned, unchanged=sum(o.action == "unchanged" for o in outcomes),
        drift=tuple(o.drift for o in outcomes if o.drift is not None), health=health, images=images,
        duration=round(time.monotonic() - began, 3), warnings=pruned.left_alone, dry_run=dry_run,
    )


def _apply_all(applier: Applier, objects: list[dict[str, Any]]) -> tuple[list[Desired], list[Outcome]]:
    """Namespaces and CRDs first (CRDs waited for), then everything else; duplicates refused."""
    first = [o for o in objects if o["kind"] in FIRST]
    rest = [o for o in objects if o["kind"] not in FIRST]
    desired: list[Desired] = []
    outcomes: list[Outcome] = []
    for batch in (first, rest):
        prepared = [applier.prepare(o) for o in batch]
        _refuse_duplicates([*desired, *prepared])
        outcomes += [applier.sync(d) for d in prepared]
        desired += prepared
        applier.wait_established([d.ref for d in prepared])
    return desired, outcomes


def _refuse_duplicates(desired: list[Desired]) -> None:
    seen: set[tuple[str, str, str, str]] = set()
    for d in desired:
        if d.ref.key in seen:
            raise RenderError(f"{d.ref} is defined more than once in the render")
        seen.add(d.ref.key)
