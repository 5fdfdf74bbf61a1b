"""Manual changes to what Shipline applied: corrected under ``drift: correct``, only reported under
``report``; changed manifests that collide with another manager fail clearly unless forced."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client

from devstack.kube import KubeCluster
from handlers.sync import sync_environment
from handlers.sync.apply import ApplyConflict
from tests.handlers.sync.conftest import configmap, deployment, make_env, write

pytestmark = pytest.mark.stack


def tamper(api: client.ApiClient, ns: str) -> None:
    """What a human with kubectl would do: scale and edit a value (other field managers)."""
    client.AppsV1Api(api).patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 5}})
    client.CoreV1Api(api).patch_namespaced_config_map("settings", ns, {"data": {"greeting": "hacked"}})


def setup_target(kube_cluster: KubeCluster, api: client.ApiClient, ns: str, checkout: Path, drift: str):  # noqa: ANN201
    write(checkout, "deploy/config.yaml", configmap("settings", greeting="hello"))
    write(checkout, "deploy/app.yaml", deployment("web"))
    env = make_env(kube_cluster, ns, drift=drift)
    sync_environment(env, checkout, "rev1", api_client=api)
    return env


def test_manual_changes_are_detected_and_corrected(
    kube_cluster: KubeCluster, api: client.ApiClient, namespace: str, checkout: Path
) -> None:
    env = setup_target(kube_cluster, api, namespace, checkout, "correct")
    tamper(api, namespace)

    result = sync_environment(env, checkout, "rev1", api_client=api)

    drifted = {str(d.ref): (d.paths, d.corrected) for d in result.drift}
    assert drifted == {
        f"ConfigMap/{namespace}/settings": (["data.greeting"], True),
        f"Deployment/{namespace}/web": (["spec.replicas"], True),
    }
    assert client.CoreV1Api(api).read_namespaced_config_map("settings", namespace).data == {"greeting": "hello"}
    assert client.AppsV1Api(api).read_namespaced_deployment("web", namespace).spec.replicas == 2
    assert result.health.status == "Healthy"
    assert sync_environment(env, checkout, "rev1", api_client=api).drift == ()


def test_manual_changes_are_only_reported_under_report(
    kube_cluster: KubeCluster, api: client.ApiClient, namespace: str, checkout: Path
) -> None:
    env = setup_target(kube_cluster, api, namespace, checkout, "report")
    tamper(api, namespace)

    result = sync_environment(env, checkout, "rev1", api_client=api)

    change = next(d for d in result.drift if d.ref.kind == "ConfigMap")
    assert not change.corrected
    assert [(c.path, c.live, c.desired) for c in change.changes] == [("data.greeting", "hacked", "hello")]
    assert {d.ref.kind for d in result.drift} == {"ConfigMap", "Deployment"}
    assert client.CoreV1Api(api).read_namespaced_config_map("settings", namespace).data == {"greeting": "hacked"}
    assert client.AppsV1Api(api).read_namespaced_deployment("web", namespace).spec.replicas == 5


def test_deleted_object_is_drift_and_recreated(
    kube_cluster: KubeCluster, api: client.ApiClient, namespace: str, checkout: Path
) -> None:
    env = setup_target(kube_cluster, api, namespace, checkout, "correct")
    client.CoreV1Api(api).delete_namespaced_config_map("settings", namespace)

    result = sync_environment(env, checkout, "rev1", api_client=api)

    assert [(str(d.ref), d.paths) for d in result.drift] == [(f"ConfigMap/{namespace}/settings", ["(object)"])]
    assert client.CoreV1Api(api).read_namespaced_config_map("settings", namespace).data == {"greeting": "hello"}


def test_changed_manifest_conflicting_with_another_manager_fails_clearly_unless_forced(
    kube_cluster: KubeCluster, api: client.ApiClient, namespace: str, checkout: Path
) -> None:
    env = setup_target(kube_cluster, api, namespace, checkout, "correct")
    client.CoreV1Api(api).patch_namespaced_config_map(
        "settings", namespace, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
                                "data": {"greeting": "mine"}},
        field_manager="intruder", force=True, _content_type="application/apply-patch+yaml")
    write(checkout, "deploy/config.yaml", configmap("settings", greeting="hello v2"))

    with pytest.raises(ApplyConflict, match=r'\.data\.greeting.*intruder.*force_conflicts'):
        sync_environment(env, checkout, "rev2", api_client=api)

    forced = env.model_copy(update={"force_conflicts": True})
    sync_environment(forced, checkout, "rev2", api_client=api)
    assert client.CoreV1Api(api).read_namespaced_config_map("settings", namespace).data == {"greeting": "hello v2"}
