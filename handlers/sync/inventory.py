"""The inventory: what Shipline applied to a target, so a later sync knows what to prune.

It is a ConfigMap ``shipline-inventory-<env>`` in the environment's own namespace
(``env.namespace``): it needs no extra namespace or RBAC beyond what the target already
requires, and it sits next to what it describes. It carries the label
``shipline.dev/inventory=<env>`` but *not* the target label, so it never lists or prunes itself.
Data keys: ``revision``, ``objects`` (JSON list of refs, apply order) and ``images`` (JSON list).

Prune deletes exactly ``previous - current`` (by group/kind/namespace/name), and only objects
that still carry ``shipline.dev/target=<env>``; anything else is left alone and reported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from handlers.errors import PermanentError
from handlers.settings import EnvironmentConfig
from handlers.sync.kubeapi import KubeApi, NotFound
from handlers.sync.objects import ObjRef, owned_by

PREFIX = "shipline-inventory-"
LABEL_INVENTORY = "shipline.dev/inventory"
PRUNE_LAST = ("Namespace", "CustomResourceDefinition")


@dataclass(frozen=True)
class Inventory:
    revision: str
    objects: tuple[ObjRef, ...]
    images: tuple[str, ...] = ()


@dataclass(frozen=True)
class PruneResult:
    pruned: tuple[ObjRef, ...]
    left_alone: tuple[str, ...]
    """Stale refs that lost our label: never deleted, reported."""


def inventory_ref(env: EnvironmentConfig) -> ObjRef:
    return ObjRef("v1", "ConfigMap", env.namespace, f"{PREFIX}{env.name}")


def read_inventory(api: KubeApi, env: EnvironmentConfig) -> Inventory | None:
    live = api.get(inventory_ref(env))
    if live is None:
        return None
    data = live.get("data") or {}
    try:
        objects = tuple(ObjRef.from_dict(d) for d in json.loads(data.get("objects", "[]")))
        images = tuple(json.loads(data.get("images", "[]")))
    except (ValueError, KeyError, TypeError) as exc:
        raise PermanentError(f"{inventory_ref(env)} is corrupt ({exc}); delete it to start over") from None
    return Inventory(revision=data.get("revision", ""), objects=objects, images=images)


def write_inventory(api: KubeApi, env: EnvironmentConfig, inventory: Inventory) -> None:
    ref = inventory_ref(env)
    body = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": ref.name, "namespace": ref.namespace, "labels": {LABEL_INVENTORY: env.name}},
        "data": {
            "revision": inventory.revision,
            "objects": json.dumps([r.to_dict() for r in inventory.objects]),
            "images": json.dumps(list(inventory.images)),
        },
    }
    api.apply(body, ref, force=True)


def stale(previous: Inventory | None, current: list[ObjRef]) -> list[ObjRef]:
    """Refs in ``previous`` but not in ``current``, in reverse apply order, Namespaces/CRDs last."""
    if previous is None:
        return []
    keep = {ref.key for ref in current}
    gone = [ref for ref in reversed(previous.objects) if ref.key not in keep]
    return sorted(gone, key=lambda ref: ref.kind in PRUNE_LAST)


def prune(api: KubeApi, env: EnvironmentConfig, refs: list[ObjRef], *, dry_run: bool) -> PruneResult:
    pruned: list[ObjRef] = []
    left: list[str] = []
    for ref in refs:
        try:
            live = api.get(ref)
        except NotFound:  # the kind itself is gone (CRD removed)
            continue
        if live is None:
            continue
        if not owned_by(live, env.name):
            left.append(f"{ref}: no longer labelled for {env.name}; not pruned")
            continue
        api.delete(ref, dry_run=dry_run)
        pruned.append(ref)
    return PruneResult(tuple(pruned), tuple(left))
