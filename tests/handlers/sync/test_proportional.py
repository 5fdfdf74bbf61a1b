"""Work proportional to what changed, against the real control plane: a new revision writes only
the objects whose manifests changed, a no-op re-sync renders nothing and writes nothing, and
writes by controllers or by other managers on fields Shipline never set are not drift."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from kubernetes import client

from devstack.kube import KubeCluster
from handlers.sync import sync_environment
from handlers.sync.inventory import read_inventory
from handlers.sync.kubeapi import KubeApi
from tests.handlers.sync.conftest import configmap, deployment, make_env, write
from tests.handlers.sync.test_sync import resource_versions

pytestmark = pytest.mark.stack


class CountingApi(KubeApi):
    """The engine's API client, counting the requests each sync makes, by method."""

    def __init__(self, api: client.ApiClient) -> None:
        super().__init__(api)
        self.calls: list[tuple[str, str]] = []

    def request(self, method: str, path: str, **kwargs):  # noqa: ANN003, ANN201
        self.calls.append((method, path))
        return super().request(method, path, **kwargs)


def fleet(checkout: Path, tag: str = "1") -> None:
    for n in range(10):
        write(checkout, f"deploy/cm-{n}.yaml", configmap(f"cm-{n}", index=str(n)))
    write(checkout, "deploy/app.yaml", deployment("web", tag=tag))


def no_checkout() -> Path:
    raise AssertionError("a no-op sync must not need the files")


def test_a_one_image_change_writes_one_object(kube_cluster: KubeCluster, api: client.ApiClient,
                                              namespace: str, checkout: Path) -> None:
    env = make_env(kube_cluster, namespace)
    fleet(checkout)
    sync_environment(env, checkout, "rev1", api_client=api)
    before = resource_versions(api, namespace)
    fleet(checkout, tag="2")

    result = sync_environment(env, checkout, "rev2", api_client=api)

    assert [str(r) for r in result.applied] == [f"Deployment/{namespace}/web"]
    assert result.unchanged == 10 and result.health.status == "Healthy"
    after = resource_versions(api, namespace)
    assert {k: v for k, v in after.items() if k.startswith("V1ConfigMap/cm-")} == \
        {k: v for k, v in before.items() if k.startswith("V1ConfigMap/cm-")}
    assert read_inventory(KubeApi(api), env).revision == "rev2"


def test_a_new_revision_that_changes_no_manifest_writes_no_object(kube_cluster: KubeCluster, api: client.ApiClient,
                                                                  namespace: str, checkout: Path) -> None:
    env = make_env(kube_cluster, namespace)
    fleet(checkout)
    sync_environment(env, checkout, "rev1", api_client=api)
    objects = {k: v for k, v in resource_versions(api, namespace).items() if "inventory" not in k}

    result = sync_environment(env, checkout, "rev2", api_client=api)

    assert result.applied == () and result.unchanged == 11
    assert {k: v for k, v in resource_versions(api, namespace).items() if "inventory" not in k} == objects
    assert read_inventory(KubeApi(api), env).revision == "rev2", "the revision moves in the inventory only"


def test_a_noop_resync_renders_nothing_and_reads_only_the_inventory(kube_cluster: KubeCluster,
                                                                      api: client.ApiClient, namespace: str,
                                                                      checkout: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from handlers.sync.cache import ClusterCache

    env = make_env(kube_cluster, namespace)
    fleet(checkout)
    counting = CountingApi(api)
    cache = ClusterCache("test", counting)
    try:
        sync_environment(env, checkout, "rev1", cache=cache)
        sync_environment(env, no_checkout, "rev1", cache=cache)  # the watches are warm now
        counting.calls.clear()
        started: list[str] = []
        start = threading.Thread.start
        monkeypatch.setattr(threading.Thread, "start", lambda t: (started.append(t.name), start(t))[1])

        result = sync_environment(env, no_checkout, "rev1", cache=cache)

        assert not result.rendered and result.applied == () and result.unchanged == 11
        assert [m for m, _ in counting.calls] == ["GET"], counting.calls  # the inventory, nothing else
        assert started == [], "the live objects are memory reads: no thread pool for them"
    finally:
        cache.stop()


def test_status_writes_and_other_managers_fields_are_not_drift(kube_cluster: KubeCluster, api: client.ApiClient,
                                                               namespace: str, checkout: Path) -> None:
    env = make_env(kube_cluster, namespace)
    fleet(checkout)
    sync_environment(env, checkout, "rev1", api_client=api)  # the rollout wrote the Deployment's status since
    client.CoreV1Api(api).patch_namespaced_config_map(
        "cm-1", namespace, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
            "name": "cm-1", "labels": {"team": "payments"}, "annotations": {"owner": "someone"}}},
        field_manager="another-tool", _content_type="application/apply-patch+yaml")

    result = sync_environment(env, no_checkout, "rev1", api_client=api)

    assert result.drift == () and result.applied == () and not result.rendered
    live = client.CoreV1Api(api).read_namespaced_config_map("cm-1", namespace)
    assert live.metadata.labels["team"] == "payments", "another manager's own field is left alone"


def test_drift_names_who_changed_the_object(kube_cluster: KubeCluster, api: client.ApiClient, namespace: str,
                                            checkout: Path) -> None:
    env = make_env(kube_cluster, namespace, drift="report")
    fleet(checkout)
    sync_environment(env, checkout, "rev1", api_client=api)
    client.AppsV1Api(api).patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 4}},
                                                            field_manager="kubectl-scale")

    result = sync_environment(env, checkout, "rev1", api_client=api)

    (found,) = result.drift
    assert found.paths == ["spec.replicas"] and not found.corrected
    assert any(w.startswith("kubectl-scale (Update at ") for w in found.by), found.by
