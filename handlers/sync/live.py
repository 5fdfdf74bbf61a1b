"""What a sync needs to know about a live object, and where it reads it from.

``LiveObject`` keeps only what the decisions need (resource version, generation, the hash of the
fields Shipline owns, the owning environment, a workload's health): under a kilobyte an object
with its key in the cache (``summary_bytes``), whatever the object's size. A ``LiveView``
answers ``get(ref)``: ``ApiView`` with one GET per object (the CLI, tests, and any kind the
cache does not watch yet), ``ClusterCache`` from memory (see ``handlers.sync.cache``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Protocol

from handlers.sync.health import CHECKED_KINDS, Health, assess
from handlers.sync.kubeapi import KubeApi
from handlers.sync.objects import LABEL_TARGET, Obj, ObjRef, ref_of
from handlers.sync.owned import owned_hash


@dataclass(frozen=True, slots=True)
class LiveObject:
    ref: ObjRef
    resource_version: str
    generation: int
    owned: str
    """``handlers.sync.owned.owned_hash``: "" when Shipline owns no field of it."""
    target: str
    """Its ``shipline.dev/target`` label ("" when it has none)."""
    health: Health | None = None
    """For workloads (``health.CHECKED_KINDS``), as ``health.assess`` sees this version."""
    deleting: bool = False


def summarize(obj: Obj) -> LiveObject:
    ref = ref_of(obj)
    meta = obj.get("metadata") or {}
    return LiveObject(
        ref=ref, resource_version=str(meta.get("resourceVersion", "")), generation=int(meta.get("generation") or 0),
        owned=owned_hash(obj), target=str((meta.get("labels") or {}).get(LABEL_TARGET, "")),
        health=assess(obj, ref) if ref.kind in CHECKED_KINDS else None,
        deleting=bool(meta.get("deletionTimestamp")),
    )


def summary_bytes(live: LiveObject) -> int:
    """Memory ``live`` holds: the summary and each object it refers to, once (an object shared
    with other summaries, as a cached small int or an empty string, is counted here too)."""
    ref, health = live.ref, live.health
    parts = [live, ref, ref.api_version, ref.kind, ref.namespace, ref.name, live.resource_version, live.generation,
             live.owned, live.target]
    if health is not None:
        parts += [health, health.status, health.reason]
    return sum(sys.getsizeof(part) for part in {id(part): part for part in parts}.values())


class LiveView(Protocol):
    def get(self, ref: ObjRef) -> LiveObject | None:
        """The object as last seen, or None when it does not exist. ``NotFound`` when its kind
        is not served (a CRD not installed)."""

    def peek(self, ref: ObjRef) -> tuple[bool, LiveObject | None]:
        """``(True, get(ref))`` when that needs no request (it is in memory), else ``(False, None)``."""


@dataclass
class ApiView:
    """Straight from the API server: one GET per object."""

    api: KubeApi

    def get(self, ref: ObjRef) -> LiveObject | None:
        live = self.api.get(ref)
        return None if live is None else summarize(live)

    def peek(self, ref: ObjRef) -> tuple[bool, LiveObject | None]:
        return False, None
