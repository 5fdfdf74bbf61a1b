"""``shipline diff TARGET``: what a sync would change, object by object, field by field.

Each rendered object is server-side applied with ``dryRun=All`` and compared with the live
object (``fields.field_changes``); objects the last inventory lists but the render lacks show as
``prune`` (only those still labelled for the target). Nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client

from handlers.settings import EnvironmentConfig
from handlers.sync.apply import Applier, Desired, ordered
from handlers.sync.fields import SHIPLINE_ANNOTATIONS, FieldChange, field_changes
from handlers.sync.inventory import prune, read_inventory, stale
from handlers.sync.kubeapi import Conflict, KubeApi, NotFound, kube_client
from handlers.sync.objects import Obj, ObjRef, ref_of
from handlers.sync.render import render


@dataclass(frozen=True)
class ObjectDiff:
    """``action``: create, update, unchanged, conflict (409 without force) or prune."""

    ref: str
    action: str
    changes: tuple[FieldChange, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, "action": self.action, "changes": [c.to_dict() for c in self.changes]}


def diff_environment(env: EnvironmentConfig, checkout: Path, revision: str = "", *,
                     api_client: client.ApiClient | None = None) -> list[ObjectDiff]:
    objects = ordered(render(env, checkout))
    api = KubeApi(api_client or kube_client(env.cluster))
    try:
        applier = Applier.for_render(api, env, objects, dry_run=True)
        diffs = [_diff_one(applier, obj) for obj in objects]
        previous = read_inventory(api, env)
        current = [_ref(applier, o) for o in objects]
        gone = prune(api, env, stale(previous, current), dry_run=True) if env.prune else None
        return diffs + [ObjectDiff(str(r), "prune") for r in (gone.pruned if gone else ())]
    finally:
        if api_client is None:
            api.close()


def _diff_one(applier: Applier, obj: Obj) -> ObjectDiff:
    try:
        desired = applier.prepare(obj)
        live = applier.api.get(desired.ref)
    except NotFound:
        if (ref_of(obj).group, str(obj["kind"])) not in applier.new_kinds:
            raise
        return ObjectDiff(str(ref_of(obj)), "create")  # its CRD is only created by this sync
    if live is None:
        return ObjectDiff(str(desired.ref), "create")
    try:
        predicted = _dry_apply(applier, desired, force=applier.env.force_conflicts)
        action = "update"
    except Conflict:
        predicted, action = _dry_apply(applier, desired, force=True), "conflict"
    changes = tuple(field_changes(live, predicted, ignore_annotations=SHIPLINE_ANNOTATIONS))
    return ObjectDiff(str(desired.ref), action if changes else "unchanged", changes)


def _dry_apply(applier: Applier, desired: Desired, *, force: bool) -> Obj:
    return applier.api.apply(desired.body, desired.ref, force=force, dry_run=True)


def _ref(applier: Applier, obj: Obj) -> ObjRef:
    try:
        return applier.prepare(obj).ref
    except NotFound:
        return ref_of(obj)
