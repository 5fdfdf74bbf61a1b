"""One sync of one environment: render → plan → apply what changed → prune → inventory → health.

Work is proportional to what changed (``handlers.sync.plan``): a re-sync of the revision the
inventory already records, with every object as Shipline left it, renders nothing and writes
nothing; a new revision that changes one manifest applies one object. Live state comes from the
cluster cache when one is given (``handlers.sync.cache``), else from GETs. Writes go out
concurrently, Namespaces and CRDs first. ``dry_run`` sends every write as ``dryRun=All``, writes
no inventory and waits for no rollout (health is then the current health of what exists).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kubernetes import client

from handlers.errors import PermanentError
from handlers.settings import EnvironmentConfig
from handlers.sync import drift
from handlers.sync.apply import Applier, Desired, concurrently, phases
from handlers.sync.barrier import wait_ready
from handlers.sync.cache import ClusterCache
from handlers.sync.fields import SHIPLINE_ANNOTATIONS, field_changes
from handlers.sync.health import Health, check_health, wait_healthy
from handlers.sync.inventory import (
    Entry,
    Inventory,
    PruneResult,
    inventory_ref,
    prune,
    read_inventory,
    stale,
    write_inventory,
)
from handlers.sync.kluctl import prune as by_discriminator
from handlers.sync.kubeapi import KubeApi, NotFound, kube_client
from handlers.sync.live import ApiView, LiveObject, LiveView, summarize
from handlers.sync.objects import ObjRef, images_of
from handlers.sync.owned import owned_hash
from handlers.sync.plan import Verdict, decide
from handlers.sync.render import RenderError, render_plan


class EmptyRender(PermanentError):
    """The render produced no objects while the inventory lists some: refused unless allow_empty."""


@dataclass(frozen=True)
class SyncResult:
    revision: str
    applied: tuple[ObjRef, ...]
    """Created or changed (including drift corrections); in dry-run: would be."""
    pruned: tuple[ObjRef, ...]
    unchanged: int
    drift: tuple[drift.Drift, ...]
    health: Health
    images: tuple[str, ...]
    duration: float
    warnings: tuple[str, ...] = ()
    dry_run: bool = False
    applied_seconds: float = 0.0
    """From the start of the sync until every write was answered (before the health wait)."""
    rendered: bool = True
    """False when nothing could have changed: same revision and settings, live state as recorded."""
    objects: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "revision": self.revision, "applied": [str(r) for r in self.applied],
            "pruned": [str(r) for r in self.pruned], "unchanged": self.unchanged,
            "drift": [d.to_dict() for d in self.drift], "health": self.health.to_dict(),
            "images": list(self.images), "duration": self.duration, "warnings": list(self.warnings),
            "dry_run": self.dry_run, "applied_seconds": self.applied_seconds, "rendered": self.rendered,
            "objects": self.objects,
        }


@dataclass(frozen=True)
class Outcome:
    desired: Desired
    action: str
    """created, configured, unchanged or skipped (drift only reported)."""
    entry: Entry | None
    drift: drift.Drift | None = None


def settings_digest(env: EnvironmentConfig) -> str:
    """What, besides the revision, decides the render and the applied manifests."""
    data = env.model_dump(mode="json", include={"name", "namespace", "render"}) | {"path": env.git.path}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def sync_environment(env: EnvironmentConfig, checkout: Path | Callable[[], Path], revision: str, *,
                     api_client: client.ApiClient | None = None, dry_run: bool = False,
                     cache: ClusterCache | None = None, correct_drift: bool | None = None) -> SyncResult:
    """Make ``env``'s cluster match ``checkout / env.git.path`` at ``revision``.

    ``checkout`` is a local checkout at ``revision`` (the caller does the Git part), or a function
    that makes one: it is called only when the sync needs the files (not for a no-op). ``cache``:
    the cluster's live-state cache (its API client is then used). ``correct_drift`` overrides
    ``env.drift`` (the flap guard turns correction off). Raises ``RenderError``/``ApplyConflict``/
    ``EmptyRender`` (permanent) or ``TransientError``.
    """
    began = time.monotonic()
    if cache is not None:
        api = cache.api
    else:
        api = KubeApi(api_client or kube_client(env.cluster))
    view: LiveView = cache.view() if cache is not None else ApiView(api)
    run = _Sync(env, api, view, revision, dry_run, began,
                env.drift == "correct" if correct_drift is None else correct_drift)
    try:
        if env.delete:
            return run.delete_all(checkout)
        return run.quick() or run.full(checkout)
    finally:
        if cache is None and api_client is None:
            api.close()


@dataclass
class _Sync:
    env: EnvironmentConfig
    api: KubeApi
    view: LiveView
    revision: str
    dry_run: bool
    began: float
    correct: bool

    def __post_init__(self) -> None:
        self.previous = read_inventory(self.api, self.env)
        self.settings = settings_digest(self.env)

    # -- nothing to do --------------------------------------------------------------------
    def quick(self) -> SyncResult | None:
        """The no-op sync: the inventory records this revision and settings, and every object
        it lists is live as recorded. No render, no write."""
        previous = self.previous
        if self.dry_run or previous is None or previous.revision != self.revision or not previous.entries \
                or previous.settings != self.settings or not all(e.digest for e in previous.entries):
            return None
        lives = self._lives(list(previous.entries))
        if any(decide(e.digest, e, live) != "unchanged" for e, live in zip(previous.entries, lives, strict=True)):
            return None
        applied_at = time.monotonic()
        health = wait_healthy(self.view, list(previous.objects), timeout=self.env.health_timeout)
        return SyncResult(self.revision, (), (), len(previous.entries), (), health, previous.images,
                          round(time.monotonic() - self.began, 3), applied_seconds=round(applied_at - self.began, 3),
                          rendered=False, objects=len(previous.entries))

    def _lives(self, entries: list[Entry]) -> list[LiveObject | None]:
        """Each entry's live object: from memory where the cache has it live (threads would cost
        more than the lookups), the rest from the API server concurrently."""
        known = [self.view.peek(e.ref) for e in entries]
        fetched = iter(concurrently(self._live, [e for e, (hit, _) in zip(entries, known, strict=True) if not hit]))
        return [live if hit else next(fetched) for hit, live in known]

    def _live(self, entry: Entry) -> LiveObject | None:
        try:
            return self.view.get(entry.ref)
        except NotFound:  # its kind is gone: the full sync sorts it out
            return None

    # -- the full sync ----------------------------------------------------------------------
    def full(self, checkout: Path | Callable[[], Path]) -> SyncResult:
        env, previous = self.env, self.previous
        plan = render_plan(env, checkout() if callable(checkout) else checkout)
        objects = plan.objects
        if not objects and previous and previous.objects and env.prune and not env.allow_empty:
            raise EmptyRender(f"{env.name}: the render produced no objects; refusing to prune the "
                              f"{len(previous.objects)} objects of revision {previous.revision} (set allow_empty)")
        applier = Applier.for_render(self.api, env, objects, dry_run=self.dry_run)  # every phase's CRDs
        outcomes: list[Outcome] = []
        seen: set[tuple[str, str, str, str]] = set()
        blocked: Health | None = None
        for number, barrier in enumerate(plan.phases):
            for phase in phases(barrier.objects):  # Namespaces, then CRDs, then the rest of the barrier's items
                desired = [applier.prepare(o) for o in phase]
                _refuse_duplicates(desired, seen)
                outcomes += concurrently(lambda d, a=applier: self._one(a, d), desired)
                applier.wait_established([d.ref for d in desired])
            if number < len(plan.phases) - 1 and not self.dry_run:
                blocked = wait_ready(self.api, [applier.ref_for(r) for r in barrier.wait],
                                     timeout=env.health_timeout)
                if blocked is not None:  # the objects after the barrier need these: not applied
                    break
        applied_at = time.monotonic()
        refs = [o.desired.ref for o in outcomes]
        images = tuple(sorted({image for o in outcomes for image in images_of(o.desired.body)}))
        entries = tuple(o.entry for o in outcomes if o.entry is not None)
        pruned = self._prune(refs, entries, images) if blocked is None else PruneResult((), ())
        if blocked is None and env.prune and plan.discriminator:
            kinds = {(r.api_version, r.kind) for r in [*refs, *(previous.objects if previous else ())]}
            live = self._labelled(plan.discriminator, kinds)
            orphans = [r for r in by_discriminator.orphans(live, refs, discriminator=plan.discriminator)
                       if r not in pruned.pruned]
            for ref in orphans:  # deployed by kluctl (or by a lost inventory): not in the inventory
                self.api.delete(ref, dry_run=self.dry_run)
            pruned = PruneResult((*pruned.pruned, *orphans), pruned.left_alone)
        if not self.dry_run:
            inventory = Inventory(self.revision, entries, images, self.settings)
            if inventory != previous:
                write_inventory(self.api, env, inventory)
        generations = {o.entry.ref.key: o.entry.generation for o in outcomes if o.entry is not None}
        health = (check_health(self.view, refs, missing_ok=True) if self.dry_run
                  else blocked or wait_healthy(self.view, refs, timeout=env.health_timeout, generations=generations))
        return SyncResult(
            revision=self.revision,
            applied=tuple(o.desired.ref for o in outcomes if o.action in ("created", "configured")),
            pruned=pruned.pruned, unchanged=sum(o.action == "unchanged" for o in outcomes),
            drift=tuple(o.drift for o in outcomes if o.drift is not None), health=health, images=images,
            duration=round(time.monotonic() - self.began, 3), warnings=pruned.left_alone, dry_run=self.dry_run,
            applied_seconds=round(applied_at - self.began, 3), objects=len(outcomes),
        )

    def _labelled(self, discriminator: str, kinds: set[tuple[str, str]]) -> list[dict[str, Any]]:
        """The live objects of these kinds that carry the kluctl target's discriminator."""
        selector = by_discriminator.selector(discriminator)
        return [o for api_version, kind in sorted(kinds)
                for o in self.api.list(api_version, kind, label_selector=selector)
                if not (o.get("metadata") or {}).get("deletionTimestamp")]  # already going

    # -- delete: true -------------------------------------------------------------------------
    def delete_all(self, checkout: Path | Callable[[], Path]) -> SyncResult:
        """Everything the environment deployed removed (inventory first, Namespaces and CRDs last;
        in kluctl mode also every object with the target's discriminator), then the inventory."""
        env, previous = self.env, self.previous
        recorded = stale(previous, [])
        gone = prune(self.api, env, recorded, dry_run=self.dry_run)
        extra: list[ObjRef] = []
        if env.render.mode == "kluctl":
            plan = render_plan(env, checkout() if callable(checkout) else checkout)
            kinds = {(r.api_version, r.kind) for r in recorded} | {
                (str(o.get("apiVersion", "")), str(o.get("kind", ""))) for o in plan.objects}
            live = self._labelled(plan.discriminator, kinds) if plan.discriminator else []
            extra = [r for r in by_discriminator.deletable(live, discriminator=plan.discriminator)
                     if r not in gone.pruned]
            for ref in extra:
                self.api.delete(ref, dry_run=self.dry_run)
        if previous is not None and not self.dry_run:
            self.api.delete(inventory_ref(env))
        pruned = (*gone.pruned, *extra)
        return SyncResult(self.revision, (), pruned, 0, (), Health("Deleted", f"{len(pruned)} objects deleted"),
                          (), round(time.monotonic() - self.began, 3), warnings=gone.left_alone,
                          dry_run=self.dry_run, rendered=env.render.mode == "kluctl")

    def _prune(self, refs: list[ObjRef], entries: tuple[Entry, ...], images: tuple[str, ...]) -> Any:
        pruning = stale(self.previous, refs) if self.env.prune else []
        if pruning and not self.dry_run and self.previous is not None:  # remember them until they are gone
            keep = tuple(e for e in self.previous.entries if e.ref in pruning)
            write_inventory(self.api, self.env, Inventory(self.revision, (*entries, *keep), images, self.settings))
        return prune(self.api, self.env, pruning, dry_run=self.dry_run)

    # -- one object ---------------------------------------------------------------------------
    def _one(self, applier: Applier, desired: Desired) -> Outcome:
        entry = self.previous.entry(desired.ref.key) if self.previous else None
        try:
            live = self.view.get(desired.ref)
        except NotFound:
            if (desired.ref.group, desired.ref.kind) not in applier.new_kinds:
                raise
            live = None  # its CRD is created by this very sync
        verdict: Verdict = decide(desired.digest, entry, live)
        if verdict == "unchanged":
            return Outcome(desired, "unchanged", _kept(entry, live) if entry else None)
        if verdict == "drift":
            return self._drifted(applier, desired, entry)
        if verdict == "deleted":
            found = drift.Drift(desired.ref, (drift.DELETED,), corrected=self.correct and not self.dry_run)
            if not self.correct:
                return Outcome(desired, "skipped", entry, found)
            return replace(self._write(applier, desired, None, force=True), drift=found)
        return self._write(applier, desired, live, force=self.env.force_conflicts)

    def _drifted(self, applier: Applier, desired: Desired, entry: Entry | None) -> Outcome:
        """Confirmed on a fresh read (a watch may lag our own last write by milliseconds), explained
        field by field, then corrected or only reported."""
        full = self.api.get(desired.ref)
        if full is None:
            return self._one(applier, desired)
        if entry is not None and owned_hash(full) == entry.owned:
            return Outcome(desired, "unchanged", _kept(entry, summarize(full)))
        changes = drift.detect(self.api, desired.ref, desired.body, full)
        if not changes:  # Shipline's fields hold its values; another manager only shares them now
            return self._write(applier, desired, summarize(full), force=True) if self.correct and not self.dry_run \
                else Outcome(desired, "unchanged", entry)
        found = drift.Drift(desired.ref, changes, corrected=self.correct and not self.dry_run,
                            by=drift.writers(full, changes))
        if not self.correct:
            return Outcome(desired, "skipped", entry, found)
        return replace(self._write(applier, desired, summarize(full), force=True), drift=found)

    def _write(self, applier: Applier, desired: Desired, live: LiveObject | None, *, force: bool) -> Outcome:
        answer = applier.apply(desired, force=force)
        if answer is None:  # dry run of an object whose namespace or CRD this sync creates
            return Outcome(desired, "created", None)
        entry = Entry(desired.ref, desired.digest, str(answer["metadata"].get("resourceVersion", "")),
                      int(answer["metadata"].get("generation") or 0), owned_hash(answer))
        if live is None:
            return Outcome(desired, "created", entry)
        if self.dry_run:
            full = self.api.get(desired.ref)
            changed = full is None or bool(field_changes(full, answer, ignore_annotations=SHIPLINE_ANNOTATIONS))
        else:
            changed = entry.resource_version != live.resource_version
        return Outcome(desired, "configured" if changed else "unchanged", entry)


def _kept(entry: Entry, live: LiveObject | None) -> Entry:
    """The inventory entry of an object left alone, at the version now live (so the next plan
    matches on resourceVersion, without the owned-fields comparison)."""
    if live is None or live.resource_version == entry.resource_version:
        return entry
    return replace(entry, resource_version=live.resource_version, generation=live.generation)


def _refuse_duplicates(desired: list[Desired], seen: set[tuple[str, str, str, str]]) -> None:
    for d in desired:
        if d.ref.key in seen:
            raise RenderError(f"{d.ref} is defined more than once in the render")
        seen.add(d.ref.key)


__all__ = ["EmptyRender", "SyncResult", "settings_digest", "sync_environment"]
