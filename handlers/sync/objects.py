"""Object references, Shipline's ownership marks, and the images workloads run.

Identity ignores the API version (``group/kind/namespace/name``), as Flux's inventory does, so an
``apiVersion`` bump (``v1beta1`` → ``v1``) is an update, never a prune plus a create.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

MANAGER = "shipline"
"""Field manager of every apply."""
LABEL_TARGET = "shipline.dev/target"
"""On every applied object: the environment that owns it. Prune never touches objects without it."""
ANNOTATION_REVISION = "shipline.dev/revision"
"""Written on every object by earlier versions; the revision now lives in the inventory only, so a
new revision that leaves an object's manifest alone does not touch the object."""
ANNOTATION_DIGEST = "shipline.dev/digest"
"""Hash of the applied manifest (as the inventory records it): ``kubectl get`` shows which one."""
WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"})

Obj = dict[str, Any]


@dataclass(frozen=True, order=True)
class ObjRef:
    """One object: ``str()`` gives ``Kind/namespace/name`` (``Kind/name`` when cluster-scoped)."""

    api_version: str
    kind: str
    namespace: str
    name: str

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0] if "/" in self.api_version else ""

    @property
    def key(self) -> tuple[str, str, str, str]:
        """Identity across API versions."""
        return (self.group, self.kind, self.namespace, self.name)

    def __str__(self) -> str:
        return "/".join(p for p in (self.kind, self.namespace, self.name) if p)

    def to_dict(self) -> dict[str, str]:
        return {"apiVersion": self.api_version, "kind": self.kind, "namespace": self.namespace,
                "name": self.name}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> ObjRef:
        return cls(data["apiVersion"], data["kind"], data.get("namespace", ""), data["name"])


def ref_of(obj: Obj) -> ObjRef:
    meta = obj.get("metadata") or {}
    return ObjRef(str(obj["apiVersion"]), str(obj["kind"]), str(meta.get("namespace") or ""),
                  str(meta["name"]))


def digest(obj: Obj) -> str:
    """Stable hash of a manifest, ignoring Shipline's own revision/digest annotations."""
    meta = dict(obj.get("metadata") or {})
    notes = {k: v for k, v in (meta.get("annotations") or {}).items()
             if k not in (ANNOTATION_REVISION, ANNOTATION_DIGEST)}
    meta["annotations"] = notes
    canonical = orjson.dumps({**obj, "metadata": meta}, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
                             default=str)
    return hashlib.sha256(canonical).hexdigest()[:20]


def mark(obj: Obj, *, target: str) -> Obj:
    """A copy carrying our label and the content digest."""
    meta = dict(obj.get("metadata") or {})
    meta["labels"] = {**(meta.get("labels") or {}), LABEL_TARGET: target}
    marked = {**obj, "metadata": meta}
    meta["annotations"] = {**(meta.get("annotations") or {}), ANNOTATION_DIGEST: digest(marked)}
    return marked


def owned_by(live: Obj, target: str) -> bool:
    return ((live.get("metadata") or {}).get("labels") or {}).get(LABEL_TARGET) == target


def annotation(live: Obj, key: str) -> str | None:
    return ((live.get("metadata") or {}).get("annotations") or {}).get(key)


def images_of(obj: Obj) -> list[str]:
    """Container and init-container images of a workload (pod template, CronJob or bare Pod)."""
    if obj.get("kind") not in WORKLOAD_KINDS:
        return []
    spec = obj.get("spec") or {}
    if obj["kind"] == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    pod = spec if obj["kind"] == "Pod" else ((spec.get("template") or {}).get("spec") or {})
    containers = [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]
    return [str(c["image"]) for c in containers if isinstance(c, dict) and c.get("image")]
