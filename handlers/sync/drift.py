"""Drift: a live object that no longer matches the manifest Shipline last applied to it.

"Last applied" is recognised by the ``shipline.dev/digest`` annotation: when the live digest
equals the digest of this revision's manifest, the manifest did not change, so any field a
forced dry-run apply would change was changed by someone else (``kubectl scale``, an edit, a
patch by another client). Fields Shipline never set are not drift. An object recorded in the
inventory but missing from the cluster is drift too (``(object)`` path).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from handlers.sync.fields import SHIPLINE_ANNOTATIONS, FieldChange, field_changes
from handlers.sync.kubeapi import KubeApi
from handlers.sync.objects import ANNOTATION_DIGEST, Obj, ObjRef, annotation

DELETED = FieldChange("(object)", "deleted outside Shipline", "present")


@dataclass(frozen=True)
class Drift:
    """Drifted fields of one object; ``corrected`` when the sync re-applied them."""

    ref: ObjRef
    changes: tuple[FieldChange, ...]
    corrected: bool

    @property
    def paths(self) -> list[str]:
        return [c.path for c in self.changes]

    def to_dict(self) -> dict[str, Any]:
        return {"ref": str(self.ref), "corrected": self.corrected, "changes": [c.to_dict() for c in self.changes]}

    def __str__(self) -> str:
        verb = "corrected" if self.corrected else "reported"
        return f"{self.ref} ({verb}): " + ", ".join(self.paths)


def same_manifest(live: Obj, desired: Obj) -> bool:
    """True when ``live`` was last applied from exactly this manifest (revision aside)."""
    mark = annotation(live, ANNOTATION_DIGEST)
    return mark is not None and mark == annotation(desired, ANNOTATION_DIGEST)


def detect(api: KubeApi, ref: ObjRef, desired: Obj, live: Obj) -> tuple[FieldChange, ...]:
    """Fields a forced apply of ``desired`` would change on ``live`` (our annotations aside)."""
    predicted = api.apply(desired, ref, force=True, dry_run=True)
    return tuple(field_changes(live, predicted, ignore_annotations=SHIPLINE_ANNOTATIONS))
