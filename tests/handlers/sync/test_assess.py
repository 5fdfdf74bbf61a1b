"""Pure checks of health assessment and field diffs (no cluster): table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from handlers.sync.fields import field_changes
from handlers.sync.health import assess
from handlers.sync.objects import ObjRef, digest, images_of, mark


def workload(kind: str, spec: dict[str, Any], status: dict[str, Any], generation: int = 1) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"generation": generation}, "spec": spec, "status": status}


@pytest.mark.parametrize(("obj", "expected"), [
    (workload("Deployment", {"replicas": 2}, {"observedGeneration": 1, "updatedReplicas": 2, "replicas": 2,
                                              "availableReplicas": 2}), "Healthy"),
    (workload("Deployment", {"replicas": 2}, {"observedGeneration": 1, "updatedReplicas": 2, "replicas": 2,
                                              "availableReplicas": 2}, generation=2), "Progressing"),
    (workload("Deployment", {"replicas": 2}, {"observedGeneration": 1, "updatedReplicas": 2, "replicas": 3,
                                              "availableReplicas": 2}), "Progressing"),
    (workload("Deployment", {}, {"observedGeneration": 1, "conditions": [
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}), "Degraded"),
    (workload("StatefulSet", {"replicas": 2}, {"observedGeneration": 1, "readyReplicas": 2,
                                               "availableReplicas": 2, "updatedReplicas": 2,
                                               "currentRevision": "a", "updateRevision": "a"}), "Healthy"),
    (workload("StatefulSet", {"replicas": 2}, {"observedGeneration": 1, "readyReplicas": 2,
                                               "availableReplicas": 2, "updatedReplicas": 1,
                                               "currentRevision": "a", "updateRevision": "b"}), "Progressing"),
    (workload("DaemonSet", {}, {"observedGeneration": 1, "desiredNumberScheduled": 2,
                                "updatedNumberScheduled": 2, "numberAvailable": 1}), "Progressing"),
    (workload("DaemonSet", {}, {"observedGeneration": 1, "desiredNumberScheduled": 2,
                                "updatedNumberScheduled": 2, "numberAvailable": 2}), "Healthy"),
    (workload("Job", {}, {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimit"}]}),
     "Degraded"),
    (workload("Job", {}, {"active": 1}), "Progressing"),
])
def test_assess(obj: dict[str, Any], expected: str) -> None:
    assert assess(obj, ObjRef("apps/v1", obj["kind"], "ns", "x")).status == expected


def test_field_changes_key_named_lists_and_ignore_bookkeeping() -> None:
    live = {"metadata": {"resourceVersion": "1", "annotations": {"shipline.dev/revision": "a"}},
            "spec": {"containers": [{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:1"}]},
            "status": {"replicas": 1}}
    desired = {"metadata": {"resourceVersion": "2", "annotations": {"shipline.dev/revision": "b"}},
               "spec": {"containers": [{"name": "b", "image": "y:2"}, {"name": "a", "image": "x:1"}]},
               "status": {"replicas": 3}}

    changes = field_changes(live, desired, ignore_annotations=frozenset({"shipline.dev/revision"}))

    assert [(c.path, c.live, c.desired) for c in changes] == [("spec.containers[b].image", "y:1", "y:2")]


def test_digest_ignores_our_annotations_but_not_the_content() -> None:
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}}
    old = {**obj, "metadata": {"name": "a", "annotations": {"shipline.dev/revision": "r0"}}}

    first, second = mark(obj, target="t"), mark(old, target="t")
    changed = mark({**obj, "data": {"k": "w"}}, target="t")

    assert digest(first) == digest(second) != digest(changed)
    assert "shipline.dev/revision" not in first["metadata"]["annotations"]


def test_images_come_from_containers_init_containers_and_cronjobs() -> None:
    cron = {"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": {
        "initContainers": [{"name": "i", "image": "init:1"}], "containers": [{"name": "c", "image": "app:1"}]}}}}}}

    assert images_of(cron) == ["init:1", "app:1"]
    assert images_of({"kind": "ConfigMap", "data": {}}) == []
