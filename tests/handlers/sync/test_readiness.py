"""The readiness predicate barriers wait on: kluctl's rules (pkg/validation) as a table of live
objects, as the apiserver returns them."""

from __future__ import annotations

from typing import Any

import pytest

from handlers.sync.readiness import check, is_ready, must_wait


def obj(api: str, kind: str, *, spec: dict[str, Any] | None = None, status: dict[str, Any] | None = None,
        generation: int = 1, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    o: dict[str, Any] = {"apiVersion": api, "kind": kind,
                         "metadata": {"name": "x", "generation": generation, "annotations": annotations or {}}}
    if spec is not None:
        o["spec"] = spec
    if status is not None:
        o["status"] = status
    return o


def cond(kind: str, status: str, **extra: str) -> dict[str, str]:
    return {"type": kind, "status": status, **extra}


CASES = [
    ("namespace active", obj("v1", "Namespace", status={"phase": "Active"}), "ready", ""),
    ("namespace terminating", obj("v1", "Namespace", status={"phase": "Terminating"}), "waiting",
     "namespace is Terminating"),
    ("crd established", obj("apiextensions.k8s.io/v1", "CustomResourceDefinition",
                            status={"conditions": [cond("NamesAccepted", "True"), cond("Established", "True")]}),
     "ready", ""),
    ("crd not yet established", obj("apiextensions.k8s.io/v1", "CustomResourceDefinition",
                                    status={"conditions": [cond("NamesAccepted", "True")]}),
     "waiting", "CRD is not established yet"),
    ("crd whose names conflict (never established: not worth waiting)",
     obj("apiextensions.k8s.io/v1", "CustomResourceDefinition",
         status={"conditions": [cond("NamesAccepted", "False")]}),
     "ready", ""),
    ("deployment just created", obj("apps/v1", "Deployment", spec={"replicas": 2}), "waiting",
     "no status available yet"),
    ("deployment not observed", obj("apps/v1", "Deployment", spec={"replicas": 2}, generation=3,
                                    status={"observedGeneration": 2, "replicas": 2, "readyReplicas": 2}),
     "waiting", "waiting for reconciliation"),
    ("deployment rolling", obj("apps/v1", "Deployment", spec={"replicas": 2},
                               status={"observedGeneration": 1, "replicas": 2, "readyReplicas": 1}),
     "waiting", "readyReplicas (1) is less then replicas (2)"),
    ("deployment rolled out", obj("apps/v1", "Deployment", spec={"replicas": 2},
                                  status={"observedGeneration": 1, "replicas": 2, "readyReplicas": 2}), "ready", ""),
    ("deployment scaled to zero", obj("apps/v1", "Deployment", spec={"replicas": 0}, status={"observedGeneration": 1}),
     "ready", ""),
    ("job running", obj("batch/v1", "Job", status={"active": 1}), "waiting", "Not completed"),
    ("job complete", obj("batch/v1", "Job", status={"conditions": [cond("Complete", "True")]}), "ready", ""),
    ("job failed", obj("batch/v1", "Job", status={"conditions": [cond("Failed", "True", message="BackoffLimit")]}),
     "failed", "BackoffLimit"),
    ("statefulset updating", obj("apps/v1", "StatefulSet", spec={"replicas": 3, "updateStrategy": {
        "type": "RollingUpdate"}}, status={"updatedReplicas": 2, "readyReplicas": 3}), "waiting",
     "2 out of 3 expected pods updated"),
    ("statefulset with a partition", obj("apps/v1", "StatefulSet", spec={"replicas": 3, "updateStrategy": {
        "type": "RollingUpdate", "rollingUpdate": {"partition": 1}}},
        status={"updatedReplicas": 2, "readyReplicas": 3}),
     "ready", ""),
    ("daemonset within maxUnavailable", obj("apps/v1", "DaemonSet", spec={"updateStrategy": {
        "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "50%"}}},
        status={"desiredNumberScheduled": 4, "updatedNumberScheduled": 4, "numberReady": 2}), "ready", ""),
    ("daemonset short of ready pods", obj("apps/v1", "DaemonSet", spec={"updateStrategy": {"type": "RollingUpdate"}},
                                          status={"desiredNumberScheduled": 4, "updatedNumberScheduled": 4,
                                                  "numberReady": 2}),
     "waiting", "2 out of 3 expected pods are ready"),
    ("pvc pending", obj("v1", "PersistentVolumeClaim", status={"phase": "Pending"}), "waiting", "Volume is not bound"),
    ("service with a cluster IP", obj("v1", "Service", spec={"clusterIP": "10.0.0.1"}, status={"loadBalancer": {}}),
     "ready", ""),
    ("load balancer without an address", obj("v1", "Service", spec={"type": "LoadBalancer", "clusterIP": "10.0.0.1"},
                                             status={"loadBalancer": {}}), "waiting", "Not ready"),
    ("pod that errored", obj("v1", "Pod", status={"containerStatuses": [
        {"name": "c", "state": {"terminated": {"reason": "Error"}}}]}), "failed", "container c exited with error"),
    ("configmap (no status)", obj("v1", "ConfigMap"), "ready", ""),
    ("custom resource without status", obj("traefik.io/v1alpha1", "IngressRoute"), "ready", ""),
    ("is-ready annotation false", obj("v1", "ConfigMap", annotations={"kluctl.io/is-ready": "false"}), "waiting",
     "kluctl.io/is-ready annotation is set to false"),
    ("is-ready annotation true wins", obj("apps/v1", "Deployment", annotations={"kluctl.io/is-ready": "true"}),
     "ready", ""),
]


@pytest.mark.parametrize(("name", "live", "state", "reason"), CASES, ids=[c[0] for c in CASES])
def test_readiness(name: str, live: dict[str, Any], state: str, reason: str) -> None:
    result = check(live)
    assert (result.state, result.reason) == (state, reason)
    assert is_ready(live) is True if state == "ready" else is_ready(live) == f"{state}: {reason}"


def test_a_custom_resource_whose_crd_has_a_status_waits_for_one() -> None:
    assert is_ready(obj("example.com/v1", "Widget"), status_expected=True) == "waiting: no status available yet"


def test_barriers_always_wait_for_namespaces_and_crds_and_for_annotated_objects() -> None:
    assert must_wait(obj("v1", "Namespace"))
    assert must_wait(obj("apiextensions.k8s.io/v1", "CustomResourceDefinition"))
    assert not must_wait(obj("apps/v1", "Deployment"))
    assert must_wait(obj("apps/v1", "Deployment", annotations={"kluctl.io/wait-readiness": "true"}))
