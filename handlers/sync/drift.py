"""Drift: a live object that no longer matches the manifest Shipline last applied to it.

Found by ``handlers.sync.plan`` (same manifest digest as the inventory's, but the fields Shipline
owns moved: ``kubectl scale``, an edit, a patch by another client); explained here, field by
field, by a forced dry-run apply of the same manifest, with who wrote the object since
(``managedFields``). Fields Shipline never set are not drift. An object recorded in the inventory
but missing from the cluster is drift too (``(object)`` path).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from handlers.sync.fields import SHIPLINE_ANNOTATIONS, FieldChange, field_changes
from handlers.sync.kubeapi import KubeApi
from handlers.sync.objects import Obj, ObjRef
from handlers.sync.owned import other_writers

DELETED = FieldChange("(object)", "deleted outside Shipline", "present")


@dataclass(frozen=True)
class Drift:
    """Drifted fields of one object; ``corrected`` when the sync re-applied them."""

    ref: ObjRef
    changes: tuple[FieldChange, ...]
    corrected: bool
    by: tuple[str, ...] = ()
    """Other field managers that wrote the object, newest first (``manager (operation at time)``)."""

    @property
    def paths(self) -> list[str]:
        return [c.path for c in self.changes]

    def to_dict(self) -> dict[str, Any]:
        return {"ref": str(self.ref), "corrected": self.corrected, "changes": [c.to_dict() for c in self.changes],
                "by": list(self.by)}

    def __str__(self) -> str:
        verb = "corrected" if self.corrected else "reported"
        return f"{self.ref} ({verb}): " + ", ".join(self.paths)


def detect(api: KubeApi, ref: ObjRef, desired: Obj, live: Obj) -> tuple[FieldChange, ...]:
    """Fields a forced apply of ``desired`` would change on ``live`` (our annotations aside)."""
    predicted = api.apply(desired, ref, force=True, dry_run=True)
    return tuple(field_changes(live, predicted, ignore_annotations=SHIPLINE_ANNOTATIONS))


def writers(live: Obj, changes: tuple[FieldChange, ...]) -> tuple[str, ...]:
    """Who wrote the changed fields, from ``managedFields`` (every other writer if none matches)."""
    found = other_writers(live)
    paths = {c.path.split("[")[0] for c in changes}
    touching = [w for w in found if any(p.split("[")[0] in paths for p in w.paths)]
    return tuple(str(w) for w in (touching or found))
