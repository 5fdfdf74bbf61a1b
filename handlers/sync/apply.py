"""Server-side apply of rendered objects: prepare, apply one, apply many concurrently.

Every object is applied with ``fieldManager=shipline`` after ``prepare`` gave it the label
``shipline.dev/target=<env>``, the digest annotation, and ``env.namespace`` when it is namespaced
and names none (a namespace on a cluster-scoped kind is dropped). Namespaces and CRDs go first;
CRDs are waited for until Established, then discovery is refreshed. The rest of a phase goes out
``APPLY_CONCURRENCY`` requests at a time.

Force: a changed manifest is applied with ``force=env.force_conflicts``; a 409 becomes an
``ApplyConflict`` listing fields and managers. Drift correction (``drift: correct``, same
manifest as last applied) always forces: taking back fields Shipline applied is its purpose.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from handlers.errors import PermanentError, TransientError
from handlers.settings import EnvironmentConfig
from handlers.sync.kubeapi import Conflict, KubeApi, NotFound, Resource
from handlers.sync.objects import Obj, ObjRef, digest, mark, ref_of

CRD_KIND = "CustomResourceDefinition"
FIRST = ("Namespace", CRD_KIND)
CRD_TIMEOUT = 60.0
DISCOVERY_TIMEOUT = 15.0
APPLY_CONCURRENCY = 8
"""Requests in flight per sync: enough to hide the API server's latency, small enough not to
crowd out other clients (client-go's default QPS is 5-50)."""

T = TypeVar("T")
R = TypeVar("R")


class ApplyConflict(PermanentError):
    """Another field manager owns fields this manifest changes (HTTP 409)."""


@dataclass(frozen=True)
class Desired:
    ref: ObjRef
    body: Obj
    digest: str


@dataclass
class Applier:
    """Applies one environment's objects; ``new_*`` describe what this very render creates."""

    api: KubeApi
    env: EnvironmentConfig
    dry_run: bool = False
    new_namespaces: set[str] = field(default_factory=set)
    """Namespaces the render creates: in dry-run their objects cannot be checked by the server."""
    new_kinds: dict[tuple[str, str], bool] = field(default_factory=dict)
    """(group, kind) → namespaced, for CRDs in the render: unserved until applied (dry-run)."""

    @classmethod
    def for_render(cls, api: KubeApi, env: EnvironmentConfig, objects: list[Obj], *, dry_run: bool) -> Applier:
        namespaces = {str(o["metadata"]["name"]) for o in objects if o["kind"] == "Namespace"}
        kinds = {(str(o["spec"]["group"]), str(o["spec"]["names"]["kind"])): o["spec"].get("scope") != "Cluster"
                 for o in objects if o["kind"] == CRD_KIND and isinstance(o.get("spec"), dict)}
        return cls(api, env, dry_run=dry_run, new_namespaces=namespaces, new_kinds=kinds)

    def prepare(self, obj: Obj) -> Desired:
        meta = dict(obj["metadata"])
        if self._namespaced(obj):
            meta["namespace"] = meta.get("namespace") or self.env.namespace
        else:
            meta.pop("namespace", None)
        body = mark({**obj, "metadata": meta}, target=self.env.name)
        return Desired(ref_of(body), body, digest(body))

    def ref_for(self, ref: ObjRef) -> ObjRef:
        """``ref`` as ``prepare`` places it: namespaced kinds without a namespace get the environment's."""
        if ref.namespace or not self._namespaced({"apiVersion": ref.api_version, "kind": ref.kind}):
            return ref
        return ObjRef(ref.api_version, ref.kind, self.env.namespace, ref.name)

    def apply(self, desired: Desired, *, force: bool) -> Obj | None:
        """The object the server answered with; None when it cannot exist yet in a dry run (its
        namespace or CRD is created by this very sync)."""
        try:
            return self.api.apply(desired.body, desired.ref, force=force, dry_run=self.dry_run)
        except Conflict as exc:
            raise _conflict(desired.ref, exc) from None
        except NotFound:
            if self.dry_run and (desired.ref.namespace in self.new_namespaces
                                 or (desired.ref.group, desired.ref.kind) in self.new_kinds):
                return None
            raise

    def wait_established(self, refs: list[ObjRef]) -> None:
        """Wait until every CRD in ``refs`` is Established, then refresh discovery."""
        crds = [r for r in refs if r.kind == CRD_KIND]
        for ref in [] if self.dry_run else crds:
            _poll(lambda ref=ref: _established(self.api.get(ref)), CRD_TIMEOUT, f"{ref} Established")
        if crds:
            self.api.forget()

    def _namespaced(self, obj: Obj) -> bool:
        try:
            return self._resource(obj).namespaced
        except NotFound:
            key = (ref_of(obj).group, str(obj["kind"]))
            if key in self.new_kinds:  # applied later in this sync; the phase order waits for it
                return self.new_kinds[key]
            raise

    def _resource(self, obj: Obj) -> Resource:
        deadline = time.monotonic() + DISCOVERY_TIMEOUT
        while True:
            try:
                return self.api.resource(str(obj["apiVersion"]), str(obj["kind"]))
            except NotFound:
                key = (ref_of(obj).group, str(obj["kind"]))
                if self.dry_run or key in self.new_kinds or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)  # a CRD applied just now may lag in discovery
                self.api.forget()


def concurrently(work: Callable[[T], R], items: Sequence[T], limit: int = APPLY_CONCURRENCY) -> list[R]:
    """``work`` over ``items`` with at most ``limit`` in flight, results in order; the first
    error is raised once all started work has finished."""
    if len(items) <= 1 or limit <= 1:
        return [work(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(limit, len(items)), thread_name_prefix="apply") as pool:
        futures = [pool.submit(work, item) for item in items]
        return [f.result() for f in futures]


def phases(objects: list[Obj]) -> list[list[Obj]]:
    """Namespaces, then CRDs, then the rest in render order (empty phases dropped)."""
    split = [[o for o in objects if o.get("kind") == "Namespace"], [o for o in objects if o.get("kind") == CRD_KIND],
             [o for o in objects if o.get("kind") not in FIRST]]
    return [p for p in split if p]


def ordered(objects: list[Obj]) -> list[Obj]:
    return [o for phase in phases(objects) for o in phase]


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
