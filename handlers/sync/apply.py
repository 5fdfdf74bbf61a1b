"""Server-side apply of rendered objects, one object at a time, drift-aware.

Every object is applied with ``fieldManager=shipline`` after ``prepare`` gave it the label
``shipline.dev/target=<env>``, the revision and digest annotations, and ``env.namespace`` when it
is namespaced and names none (a namespace on a cluster-scoped kind is dropped). Namespaces and
CRDs go first; CRDs are waited for until Established, then discovery is refreshed.

Force: a changed manifest is applied with ``force=env.force_conflicts``; a 409 becomes an
``ApplyConflict`` listing fields and managers. Drift correction (``drift: correct``, same
manifest as last applied) always forces: taking back fields Shipline applied is its purpose.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from handlers.errors import PermanentError, TransientError
from handlers.settings import EnvironmentConfig
from handlers.sync import drift
from handlers.sync.fields import field_changes
from handlers.sync.kubeapi import Conflict, KubeApi, NotFound, Resource
from handlers.sync.objects import ANNOTATION_REVISION, Obj, ObjRef, annotation, mark, ref_of

CRD_KIND = "CustomResourceDefinition"
FIRST = ("Namespace", CRD_KIND)
CRD_TIMEOUT = 60.0
DISCOVERY_TIMEOUT = 15.0

Action = Literal["created", "configured", "unchanged", "skipped"]


class ApplyConflict(PermanentError):
    """Another field manager owns fields this manifest changes (HTTP 409)."""


@dataclass(frozen=True)
class Desired:
    ref: ObjRef
    body: Obj


@dataclass(frozen=True)
class Outcome:
    ref: ObjRef
    action: Action
    drift: drift.Drift | None = None


@dataclass
class Applier:
    """Applies one environment's objects at one revision; ``known`` = keys of the last inventory."""

    api: KubeApi
    env: EnvironmentConfig
    revision: str
    dry_run: bool = False
    known: set[tuple[str, str, str, str]] = field(default_factory=set)
    new_namespaces: set[str] = field(default_factory=set)
    """Namespaces the render creates: in dry-run their objects cannot be checked by the server."""
    new_kinds: dict[tuple[str, str], bool] = field(default_factory=dict)
    """(group, kind) → namespaced, for CRDs in the render: unserved until applied (dry-run)."""

    @classmethod
    def for_render(cls, api: KubeApi, env: EnvironmentConfig, revision: str, objects: list[Obj], *,
                   dry_run: bool, known: set[tuple[str, str, str, str]] | None = None) -> Applier:
        namespaces = {str(o["metadata"]["name"]) for o in objects if o["kind"] == "Namespace"}
        kinds = {(str(o["spec"]["group"]), str(o["spec"]["names"]["kind"])): o["spec"].get("scope") != "Cluster"
                 for o in objects if o["kind"] == CRD_KIND and isinstance(o.get("spec"), dict)}
        return cls(api, env, revision, dry_run=dry_run, known=known or set(), new_namespaces=namespaces,
                   new_kinds=kinds)

    def prepare(self, obj: Obj) -> Desired:
        meta = dict(obj["metadata"])
        if self._namespaced(obj):
            meta["namespace"] = meta.get("namespace") or self.env.namespace
        else:
            meta.pop("namespace", None)
        body = mark({**obj, "metadata": meta}, target=self.env.name, revision=self.revision)
        return Desired(ref_of(body), body)

    def sync(self, desired: Desired) -> Outcome:
        """Create, update, correct or leave one object (see module doc for the rules)."""
        try:
            live = self.api.get(desired.ref)
        except NotFound:
            if self.dry_run and (desired.ref.group, desired.ref.kind) in self.new_kinds:
                return Outcome(desired.ref, "created")  # its CRD is only created by this sync
            raise
        if live is None:
            return self._create(desired)
        if not drift.same_manifest(live, desired.body):
            return Outcome(desired.ref, self._apply(desired, live, force=self.env.force_conflicts))
        changes = drift.detect(self.api, desired.ref, desired.body, live)
        if changes and self.env.drift == "report":
            return Outcome(desired.ref, "skipped", drift.Drift(desired.ref, changes, corrected=False))
        if changes:
            self._apply(desired, live, force=True)
            return Outcome(desired.ref, "configured", drift.Drift(desired.ref, changes, not self.dry_run))
        if annotation(live, ANNOTATION_REVISION) == self.revision:
            return Outcome(desired.ref, "unchanged")
        return Outcome(desired.ref, self._apply(desired, live, force=self.env.force_conflicts))

    def wait_established(self, refs: list[ObjRef]) -> None:
        """Wait until every CRD in ``refs`` is Established, then refresh discovery."""
        crds = [r for r in refs if r.kind == CRD_KIND]
        for ref in [] if self.dry_run else crds:
            _poll(lambda ref=ref: _established(self.api.get(ref)), CRD_TIMEOUT, f"{ref} Established")
        if crds:
            self.api.forget()

    def _create(self, desired: Desired) -> Outcome:
        deleted = desired.ref.key in self.known
        if deleted and self.env.drift == "report":
            return Outcome(desired.ref, "skipped", drift.Drift(desired.ref, (drift.DELETED,), corrected=False))
        self._apply(desired, None, force=self.env.force_conflicts)
        found = drift.Drift(desired.ref, (drift.DELETED,), corrected=not self.dry_run) if deleted else None
        return Outcome(desired.ref, "created", found)

    def _apply(self, desired: Desired, live: Obj | None, *, force: bool) -> Action:
        try:
            result = self.api.apply(desired.body, desired.ref, force=force, dry_run=self.dry_run)
        except Conflict as exc:
            raise _conflict(desired.ref, exc) from None
        except NotFound:
            if self.dry_run and desired.ref.namespace in self.new_namespaces:
                return "created"  # its namespace is created by this very sync
            raise
        if live is None:
            return "created"
        changed = (field_changes(live, result) if self.dry_run
                   else result["metadata"].get("resourceVersion") != live["metadata"].get("resourceVersion"))
        return "configured" if changed else "unchanged"

    def _namespaced(self, obj: Obj) -> bool:
        try:
            return self._resource(obj).namespaced
        except NotFound:
            key = (ref_of(obj).group, str(obj["kind"]))
            if self.dry_run and key in self.new_kinds:
                return self.new_kinds[key]
            raise

    def _resource(self, obj: Obj) -> Resource:
        deadline = time.monotonic() + DISCOVERY_TIMEOUT
        while True:
            try:
                return self.api.resource(str(obj["apiVersion"]), str(obj["kind"]))
            except NotFound:
                if self.dry_run or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)  # a CRD applied just now may lag in discovery
                self.api.forget()


def ordered(objects: list[Obj]) -> list[Obj]:
    """Namespaces, then CRDs, then the rest in render order."""
    rank = {kind: i for i, kind in enumerate(FIRST)}
    return sorted(objects, key=lambda o: rank.get(str(o.get("kind")), len(FIRST)))


def _conflict(ref: ObjRef, exc: Conflict) -> ApplyConflict:
    fields = "; ".join(f"{f or '?'} ({m})" for f, m in exc.causes) or str(exc)
    return ApplyConflict(
        f"{ref}: server-side apply conflicts with other field managers: {fields}. Someone else now owns "
        "these fields; revert their change, or set force_conflicts: true to take them over"
    )


def _established(crd: Obj | None) -> bool:
    conditions = ((crd or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def _poll(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TransientError(f"{what}: not reached within {timeout:.0f}s")
        time.sleep(0.2)
