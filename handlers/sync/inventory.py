"""The inventory: what Shipline applied to an environment, so a later sync knows what changed.

It is a ConfigMap ``shipline-inventory-<env>`` in the environment's own namespace
(``env.namespace``): it needs no extra namespace or RBAC beyond what the environment already
requires, and it sits next to what it describes. It carries the label
``shipline.dev/inventory=<env>`` but *not* the target label, so it never lists, watches or prunes
itself. ``data``: ``revision``, ``images`` (JSON list), ``settings`` (a hash of the environment's
render and apply settings); ``binaryData.objects.json.gz``: one entry per object in apply order —
its ref, the digest of the manifest Shipline applied, and the resourceVersion, generation and
owned-fields hash the API server answered with. About 40 bytes an object compressed, so a
ConfigMap holds an environment of 20,000 objects.

A sync applies an object only when its digest changed, when it is missing, or when its live
state moved away from the recorded one on fields Shipline owns (``handlers.sync.plan``). Prune
deletes exactly ``previous - current`` (by group/kind/namespace/name), and only objects that
still carry ``shipline.dev/target=<env>``; anything else is left alone and reported.
"""

from __future__ import annotations

import base64
import gzip
import json
from dataclasses import dataclass, field

from handlers.errors import PermanentError
from handlers.settings import EnvironmentConfig
from handlers.sync.kubeapi import KubeApi, NotFound
from handlers.sync.objects import ObjRef, owned_by

PREFIX = "shipline-inventory-"
LABEL_INVENTORY = "shipline.dev/inventory"
PRUNE_LAST = ("Namespace", "CustomResourceDefinition")
OBJECTS_KEY = "objects.json.gz"

Key = tuple[str, str, str, str]


@dataclass(frozen=True, slots=True)
class Entry:
    """One applied object: the manifest's digest and what the server answered."""

    ref: ObjRef
    digest: str = ""
    resource_version: str = ""
    generation: int = 0
    owned: str = ""

    def row(self) -> list[str | int]:
        r = self.ref
        return [r.api_version, r.kind, r.namespace, r.name, self.digest, self.resource_version, self.generation,
                self.owned]

    @classmethod
    def from_row(cls, row: list[str | int]) -> Entry:
        api_version, kind, namespace, name, digest, rv, generation, owned = row
        return cls(ObjRef(str(api_version), str(kind), str(namespace), str(name)), str(digest), str(rv),
                   int(generation), str(owned))


@dataclass(frozen=True)
class Inventory:
    revision: str
    entries: tuple[Entry, ...]
    images: tuple[str, ...] = ()
    settings: str = ""
    by_key: dict[Key, Entry] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.by_key.update({e.ref.key: e for e in self.entries})

    @property
    def objects(self) -> tuple[ObjRef, ...]:
        return tuple(e.ref for e in self.entries)

    def entry(self, key: Key) -> Entry | None:
        return self.by_key.get(key)


def inventory_ref(env: EnvironmentConfig) -> ObjRef:
    return ObjRef("v1", "ConfigMap", env.namespace, f"{PREFIX}{env.name}")


def read_inventory(api: KubeApi, env: EnvironmentConfig) -> Inventory | None:
    live = api.get(inventory_ref(env))
    if live is None:
        return None
    data, binary = live.get("data") or {}, live.get("binaryData") or {}
    try:
        if OBJECTS_KEY in binary:
            rows = json.loads(gzip.decompress(base64.b64decode(binary[OBJECTS_KEY])))
            entries = tuple(Entry.from_row(r) for r in rows)
        else:  # written before digests were recorded: every object is applied once more
            entries = tuple(Entry(ObjRef.from_dict(d)) for d in json.loads(data.get("objects", "[]")))
        images = tuple(json.loads(data.get("images", "[]")))
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise PermanentError(f"{inventory_ref(env)} is corrupt ({exc}); delete it to start over") from None
    return Inventory(data.get("revision", ""), entries, images, data.get("settings", ""))


def write_inventory(api: KubeApi, env: EnvironmentConfig, inventory: Inventory) -> None:
    ref = inventory_ref(env)
    rows = json.dumps([e.row() for e in inventory.entries], separators=(",", ":")).encode()
    body = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": ref.name, "namespace": ref.namespace, "labels": {LABEL_INVENTORY: env.name}},
        "data": {"revision": inventory.revision, "images": json.dumps(list(inventory.images)),
                 "settings": inventory.settings, "count": str(len(inventory.entries))},
        "binaryData": {OBJECTS_KEY: base64.b64encode(gzip.compress(rows, mtime=0)).decode()},
    }
    api.apply(body, ref, force=True)


def stale(previous: Inventory | None, current: list[ObjRef]) -> list[ObjRef]:
    """Refs in ``previous`` but not in ``current``, in reverse apply order, Namespaces/CRDs last."""
    if previous is None:
        return []
    keep = {ref.key for ref in current}
    gone = [ref for ref in reversed(previous.objects) if ref.key not in keep]
    return sorted(gone, key=lambda ref: ref.kind in PRUNE_LAST)


@dataclass(frozen=True)
class PruneResult:
    pruned: tuple[ObjRef, ...]
    left_alone: tuple[str, ...]
    """Stale refs that lost our label: never deleted, reported."""


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
