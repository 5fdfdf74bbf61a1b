"""Prune and delete by a kluctl project's discriminator (kluctl's ``prune`` / ``delete``,
``pkg/deployment/utils/delete_utils.go``), as pure functions over what the cluster lists.

Every object a kluctl target renders carries ``kluctl.io/discriminator=<discriminator>``; the
engine lists the cluster with ``selector(discriminator)`` (every listable kind) and passes the live
objects here. ``orphans`` are those the render no longer has; ``deletable`` is everything, for an
environment removed with ``delete: true``. Both leave alone, as kluctl does: objects annotated
``kluctl.io/skip-delete: "true"`` or ``helm.sh/resource-policy: keep``, objects owned by another
object (``ownerReferences``), and objects no ``managers`` field manager wrote (Shipline's own, and
kluctl's, so a project moved from kluctl to Shipline prunes what kluctl deployed). The order is
kluctl's: Namespaces first, then well-known high-level custom resources, then workloads and
Services, then the rest; objects inside a Namespace being deleted are left to it.
"""

from __future__ import annotations

from collections.abc import Iterable

from handlers.sync.objects import MANAGER, Obj, ObjRef, ref_of

DISCRIMINATOR_LABEL = "kluctl.io/discriminator"
MANAGERS = (MANAGER, "kluctl")
DELETE_ORDER: tuple[frozenset[str], ...] = (
    frozenset({"Namespace"}),
    frozenset({"monitoring.coreos.com", "kafka.strimzi.io", "zookeeper.pravega.io", "elasticsearch.k8s.elastic.co",
               "cert-manager.io", "bitnami.com", "acid.zalan.do"}),
    frozenset({"Deployment", "StatefulSet", "DaemonSet", "Service", "Ingress"}),
)
"""Kinds or API groups, deleted in this order; everything else last."""


def selector(discriminator: str) -> str:
    """The label selector that lists a target's objects."""
    if not discriminator:
        raise ValueError("a target without a discriminator cannot be pruned or deleted by discriminator")
    return f"{DISCRIMINATOR_LABEL}={discriminator}"


def orphans(live: Iterable[Obj], rendered: Iterable[ObjRef], *, discriminator: str,
            managers: tuple[str, ...] = MANAGERS) -> list[ObjRef]:
    """Live objects of the target that ``rendered`` (the refs applied, namespaces filled in) lacks."""
    keep = {ref.key for ref in rendered}
    return deletable([o for o in live if ref_of(o).key not in keep], discriminator=discriminator,
                     managers=managers)


def deletable(live: Iterable[Obj], *, discriminator: str, managers: tuple[str, ...] = MANAGERS) -> list[ObjRef]:
    """The live objects of the target that may be deleted, in deletion order."""
    candidates = [o for o in live if _labelled(o, discriminator) and _may_delete(o, managers)]
    ordered = sorted(candidates, key=_rank)
    namespaces = {ref_of(o).name for o in ordered if o.get("kind") == "Namespace" and _group(o) == ""}
    return [ref_of(o) for o in ordered if o.get("kind") == "Namespace" or ref_of(o).namespace not in namespaces]


def _labelled(obj: Obj, discriminator: str) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return bool(discriminator) and labels.get(DISCRIMINATOR_LABEL) == discriminator


def _may_delete(obj: Obj, managers: tuple[str, ...]) -> bool:
    meta = obj.get("metadata") or {}
    notes = meta.get("annotations") or {}
    if str(notes.get("kluctl.io/skip-delete", "")).lower() == "true" or notes.get("helm.sh/resource-policy") == "keep":
        return False
    if str(notes.get("kluctl.io/force-managed", "")).lower() == "true":
        return True
    if meta.get("ownerReferences"):
        return False
    return any(entry.get("manager") in managers for entry in meta.get("managedFields") or [])


def _rank(obj: Obj) -> int:
    for rank, names in enumerate(DELETE_ORDER):
        if obj.get("kind") in names or _group(obj) in names:
            return rank
    return len(DELETE_ORDER)


def _group(obj: Obj) -> str:
    return str(obj.get("apiVersion", "")).rpartition("/")[0]
