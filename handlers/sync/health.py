"""Workload health after an apply, in the spirit of ``kubectl rollout status``.

- Deployment: controller observed the generation; updated == desired; no old replicas left;
  available == updated. ``Progressing=False/ProgressDeadlineExceeded`` is Degraded at once.
- StatefulSet: observed generation; ready, updated and available == desired; one revision.
- DaemonSet: observed generation; updated and available == desired number scheduled.
- Job: ``Complete`` is Healthy, ``Failed`` is Degraded, anything else is Progressing.

``wait_healthy`` polls until nothing is Progressing or the timeout passes; a timeout is Degraded
with the last reason, so a Deployment that can never become Available ends Degraded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from handlers.sync.objects import Obj, ObjRef

Status = Literal["Healthy", "Progressing", "Degraded", "Deleted"]
CHECKED_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "Job"})
POLL_INTERVAL = 0.2
_RANK = {"Healthy": 0, "Deleted": 0, "Progressing": 1, "Degraded": 2}


@dataclass(frozen=True)
class Health:
    status: Status
    reason: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"status": self.status, "reason": self.reason}


HEALTHY = Health("Healthy")


def wait_healthy(view: Any, refs: list[ObjRef], *, timeout: float,
                 generations: dict[tuple[str, str, str, str], int] | None = None) -> Health:
    """Poll ``view`` (a ``handlers.sync.live.LiveView``: the cluster cache, or GETs) until no
    workload in ``refs`` is Progressing, or ``timeout`` passes (then Degraded with the reason)."""
    deadline = time.monotonic() + timeout
    while True:
        health = check_health(view, refs, generations=generations)
        if health.status != "Progressing":
            return health
        if time.monotonic() >= deadline:
            return Health("Degraded", f"not healthy after {timeout:g}s: {health.reason}")
        time.sleep(POLL_INTERVAL)


def check_health(view: Any, refs: list[ObjRef], *, missing_ok: bool = False,
                 generations: dict[tuple[str, str, str, str], int] | None = None) -> Health:
    """The worst health among the workloads in ``refs`` (reasons of that status joined).
    ``generations``: the generation each workload had when this sync wrote it; a view that still
    shows an older one (a watch a few milliseconds behind) is not trusted yet."""
    results: list[Health] = []
    for ref in (r for r in refs if r.kind in CHECKED_KINDS):
        live = view.get(ref)
        if live is None:
            if not missing_ok:
                results.append(Health("Degraded", f"{ref}: not found"))
            continue
        if live.generation < (generations or {}).get(ref.key, 0):
            results.append(Health("Progressing", f"{ref}: waiting for the new generation to be seen"))
            continue
        results.append(live.health or HEALTHY)
    return _worst(results)


def assess(obj: Obj, ref: ObjRef) -> Health:
    """One workload; its status only counts once the controller observed the current generation."""
    status = obj.get("status") or {}
    if ref.kind != "Job" and status.get("observedGeneration", 0) < (obj.get("metadata") or {}).get("generation", 1):
        return Health("Progressing", f"{ref}: waiting for the controller to observe the new generation")
    health = _ASSESSORS[ref.kind](obj.get("spec") or {}, status)
    return health if health.status == "Healthy" else Health(health.status, f"{ref}: {health.reason}")


def _deployment(spec: dict[str, Any], status: dict[str, Any]) -> Health:
    conditions = _conditions(status)
    progressing = conditions.get("Progressing", {})
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return Health("Degraded", f"progress deadline exceeded: {progressing.get('message', '')}")
    desired, updated = spec.get("replicas", 1), status.get("updatedReplicas", 0)
    total, available = status.get("replicas", 0), status.get("availableReplicas", 0)
    if updated < desired:
        return Health("Progressing", f"{updated}/{desired} replicas updated{_failure(conditions)}")
    if total > updated:
        return Health("Progressing", f"{total - updated} old replicas pending termination")
    if available < updated:
        return Health("Progressing", f"{available}/{updated} updated replicas available{_failure(conditions)}")
    return HEALTHY


def _statefulset(spec: dict[str, Any], status: dict[str, Any]) -> Health:
    desired = spec.get("replicas", 1)
    ready, updated = status.get("readyReplicas", 0), status.get("updatedReplicas", 0)
    if ready < desired or status.get("availableReplicas", 0) < desired:
        return Health("Progressing", f"{ready}/{desired} replicas ready")
    if updated < desired or status.get("currentRevision") != status.get("updateRevision"):
        return Health("Progressing", f"{updated}/{desired} replicas updated")
    return HEALTHY


def _daemonset(spec: dict[str, Any], status: dict[str, Any]) -> Health:
    desired = status.get("desiredNumberScheduled", 0)
    updated, available = status.get("updatedNumberScheduled", 0), status.get("numberAvailable", 0)
    if updated < desired or available < desired:
        return Health("Progressing", f"{updated}/{desired} updated, {available}/{desired} available")
    return HEALTHY


def _job(spec: dict[str, Any], status: dict[str, Any]) -> Health:
    conditions = _conditions(status)
    if conditions.get("Failed", {}).get("status") == "True":
        failed = conditions["Failed"]
        return Health("Degraded", f"job failed: {failed.get('reason', '')} {failed.get('message', '')}".strip())
    if conditions.get("Complete", {}).get("status") == "True":
        return HEALTHY
    return Health("Progressing", f"{status.get('succeeded', 0)}/{spec.get('completions', 1)} completions")


def _conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c.get("type", ""): c for c in status.get("conditions") or []}


def _failure(conditions: dict[str, dict[str, Any]]) -> str:
    failure = conditions.get("ReplicaFailure", {})
    return f" ({failure.get('message')})" if failure.get("status") == "True" else ""


def _worst(results: list[Health]) -> Health:
    if not results:
        return HEALTHY
    worst = max(results, key=lambda h: _RANK[h.status]).status
    return Health(worst, "; ".join(h.reason for h in results if h.status == worst and h.reason))


_ASSESSORS: dict[str, Callable[[dict[str, Any], dict[str, Any]], Health]] = {
    "Deployment": _deployment, "StatefulSet": _statefulset, "DaemonSet": _daemonset, "Job": _job,
}
