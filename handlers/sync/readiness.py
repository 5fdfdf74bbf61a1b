"""Is a live object ready? kluctl's readiness (``pkg/validation/validation.go``), which its
``waitReadiness`` and barriers wait for, as a pure function of the object the cluster returns.

- ``kluctl.io/is-ready`` on the object decides when set; ``kluctl.io/validate-ignore`` is ready;
- a ``status.observedGeneration`` behind ``metadata.generation``: not yet reconciled;
- no status at all: not ready for the built-in kinds that have one (a just-created Deployment),
  ready otherwise (kluctl asks the CRD's schema; ``status_expected=True`` says it has one);
- Namespace: ``status.phase`` Active (Shipline's addition: kluctl treats any status as ready);
- CustomResourceDefinition: ``Established``, or ``NamesAccepted`` False (a conflict, not worth waiting);
- Deployment: ``readyReplicas`` ≥ ``replicas`` (unless scaled to 0);
- StatefulSet / DaemonSet with RollingUpdate: kluctl's counts of updated and ready pods;
- Job: ``Complete`` True; ``Failed`` True is a failure; Pod: completed (``PodCompleted``);
- PersistentVolumeClaim: Bound; Service: has a cluster IP, a LoadBalancer an ingress.

``check`` gives the state and the reason; ``is_ready`` is ``True`` or the reason it is not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from handlers.sync.objects import Obj

State = Literal["ready", "waiting", "failed"]
WAIT_ALWAYS = frozenset({("apiextensions.k8s.io", "CustomResourceDefinition"), ("", "Namespace")})
"""Waited for at every barrier, whatever the item says: what the objects after it need to exist."""
STATUS_KINDS = frozenset({
    ("", "Namespace"), ("", "Pod"), ("", "PersistentVolumeClaim"), ("", "Service"), ("", "ReplicationController"),
    ("apps", "Deployment"), ("apps", "StatefulSet"), ("apps", "DaemonSet"), ("apps", "ReplicaSet"),
    ("batch", "Job"), ("batch", "CronJob"), ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ("autoscaling", "HorizontalPodAutoscaler"), ("networking.k8s.io", "Ingress"), ("policy", "PodDisruptionBudget"),
})


@dataclass(frozen=True)
class Readiness:
    state: State
    reason: str = ""

    @property
    def ready(self) -> bool:
        return self.state == "ready"


READY = Readiness("ready")


def is_ready(obj: Obj, *, status_expected: bool | None = None) -> bool | str:
    """``True``, or why ``obj`` (as the cluster returns it) is not ready (or failed)."""
    result = check(obj, status_expected=status_expected)
    return True if result.ready else f"{result.state}: {result.reason}"


def must_wait(obj: Obj) -> bool:
    """Whether a barrier waits for ``obj`` even when its item does not ask for readiness."""
    notes = (obj.get("metadata") or {}).get("annotations") or {}
    return _group_kind(obj) in WAIT_ALWAYS or str(notes.get("kluctl.io/wait-readiness", "")).lower() == "true"


def check(obj: Obj, *, status_expected: bool | None = None) -> Readiness:
    meta = obj.get("metadata") or {}
    notes = meta.get("annotations") or {}
    if str(notes.get("kluctl.io/validate-ignore", "")).lower() == "true":
        return READY
    if "kluctl.io/is-ready" in notes:
        return READY if str(notes["kluctl.io/is-ready"]).lower() == "true" else \
            Readiness("waiting", "kluctl.io/is-ready annotation is set to false")
    status = obj.get("status")
    group_kind = _group_kind(obj)
    if status is None:
        expected = status_expected if status_expected is not None else group_kind in STATUS_KINDS
        return Readiness("waiting", "no status available yet") if expected else READY
    observed = status.get("observedGeneration")
    if isinstance(observed, int) and observed != meta.get("generation", observed):
        return Readiness("waiting", "waiting for reconciliation")
    checker = _CHECKS.get(group_kind)
    return checker(obj, status) if checker else READY


def _namespace(obj: Obj, status: dict[str, Any]) -> Readiness:
    phase = status.get("phase")
    return READY if phase == "Active" else Readiness("waiting", f"namespace is {phase or 'not active'}")


def _crd(obj: Obj, status: dict[str, Any]) -> Readiness:
    conditions = _conditions(status)
    if conditions.get("Established", {}).get("status") == "True":
        return READY
    names = conditions.get("NamesAccepted")
    if names is None:
        return Readiness("waiting", "NamesAccepted condition not in status")
    return READY if names.get("status") == "False" else Readiness("waiting", "CRD is not established yet")


def _deployment(obj: Obj, status: dict[str, Any]) -> Readiness:
    if (obj.get("spec") or {}).get("replicas", 1) == 0:
        return READY
    if "readyReplicas" not in status or "replicas" not in status:
        return Readiness("waiting", "readyReplicas field not in status or empty")
    if status["readyReplicas"] < status["replicas"]:
        return Readiness("waiting", f"readyReplicas ({status['readyReplicas']}) is less then replicas "
                                    f"({status['replicas']})")
    return READY


def _statefulset(obj: Obj, status: dict[str, Any]) -> Readiness:
    spec = obj.get("spec") or {}
    strategy = spec.get("updateStrategy") or {}
    replicas = spec.get("replicas", 1)
    if strategy.get("type", "RollingUpdate") != "RollingUpdate" or replicas == 0:
        return READY
    expected = replicas - ((strategy.get("rollingUpdate") or {}).get("partition") or 0)
    if status.get("updatedReplicas", 0) != expected:
        return Readiness("waiting", f"{status.get('updatedReplicas', 0)} out of {expected} expected pods updated")
    if status.get("readyReplicas", 0) != replicas:
        return Readiness("waiting", f"{status.get('readyReplicas', 0)} out of {replicas} expected pods are ready")
    return READY


def _daemonset(obj: Obj, status: dict[str, Any]) -> Readiness:
    strategy = (obj.get("spec") or {}).get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return READY
    desired, updated = status.get("desiredNumberScheduled", 0), status.get("updatedNumberScheduled", 0)
    if updated != desired:
        return Readiness("waiting", f"{updated} out of {desired} expected pods have been scheduled")
    unavailable = _int_or_percent((strategy.get("rollingUpdate") or {}).get("maxUnavailable", 1), desired)
    expected = desired - unavailable
    if status.get("numberReady", 0) < expected:
        return Readiness("waiting", f"{status.get('numberReady', 0)} out of {expected} expected pods are ready")
    return READY


def _job(obj: Obj, status: dict[str, Any]) -> Readiness:
    conditions = _conditions(status)
    failed = conditions.get("Failed", {})
    if failed.get("status") == "True":
        return Readiness("failed", failed.get("message") or "Failed")
    complete = conditions.get("Complete", {})
    return READY if complete.get("status") == "True" else \
        Readiness("waiting", complete.get("message") or "Not completed")


def _pod(obj: Obj, status: dict[str, Any]) -> Readiness:
    for container in status.get("containerStatuses") or []:
        if ((container.get("state") or {}).get("terminated") or {}).get("reason") == "Error":
            return Readiness("failed", f"container {container.get('name')} exited with error")
    ready = _conditions(status).get("Ready", {})
    if ready.get("status") == "False" and ready.get("reason") == "PodCompleted":
        return READY
    return Readiness("waiting", "Not ready")


def _pvc(obj: Obj, status: dict[str, Any]) -> Readiness:
    return READY if status.get("phase") == "Bound" else Readiness("waiting", "Volume is not bound")


def _service(obj: Obj, status: dict[str, Any]) -> Readiness:
    spec = obj.get("spec") or {}
    if spec.get("type") == "ExternalName":
        return READY
    if not spec.get("clusterIP"):
        return Readiness("failed", "Service does not have a cluster IP")
    if spec.get("type") == "LoadBalancer" and not spec.get("externalIPs") and \
            not (status.get("loadBalancer") or {}).get("ingress"):
        return Readiness("waiting", "Not ready")
    return READY


def _int_or_percent(value: Any, total: int) -> int:
    try:
        if isinstance(value, str):
            return int(int(value.rstrip("%")) * total / 100) if value.endswith("%") else int(value)
        return int(value)
    except ValueError:
        return total


def _conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c.get("type", ""): c for c in status.get("conditions") or [] if isinstance(c, dict)}


def _group_kind(obj: Obj) -> tuple[str, str]:
    return str(obj.get("apiVersion", "")).rpartition("/")[0], str(obj.get("kind", ""))


_CHECKS = {
    ("", "Namespace"): _namespace, ("apiextensions.k8s.io", "CustomResourceDefinition"): _crd,
    ("apps", "Deployment"): _deployment, ("apps", "StatefulSet"): _statefulset, ("apps", "DaemonSet"): _daemonset,
    ("batch", "Job"): _job, ("", "Pod"): _pod, ("", "PersistentVolumeClaim"): _pvc, ("", "Service"): _service,
}
