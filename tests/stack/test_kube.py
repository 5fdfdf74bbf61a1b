"""The local control plane runs real workloads: server-side apply, scheduling onto kwok nodes,
Deployment rollout to Available, and reads through the ``kubernetes`` client."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config

from devstack.kube import CONTEXT, KubeCluster

pytestmark = pytest.mark.stack
APPLY = {"field_manager": "shipline-test", "_content_type": "application/apply-patch+yaml"}


@pytest.fixture
def api(kube_cluster: KubeCluster) -> Iterator[client.ApiClient]:
    with config.new_client_from_config(config_file=str(kube_cluster.kubeconfig), context=CONTEXT) as api:
        yield api


def deployment(name: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": 2, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels},
                         "spec": {"containers": [{"name": "app", "image": "127.0.0.1:5000/x:1"}]}},
        },
    }


def wait_available(apps: client.AppsV1Api, name: str, timeout: float = 60) -> client.V1Deployment:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dep = apps.read_namespaced_deployment(name, "default")
        conditions = {c.type: c.status for c in (dep.status.conditions or [])}
        if conditions.get("Available") == "True" and dep.status.available_replicas == 2:
            return dep
        time.sleep(0.2)
    raise AssertionError(f"deployment {name} not Available within {timeout}s: {dep.status}")


def test_cluster_reports_ready_kwok_nodes(kube_cluster: KubeCluster, api: client.ApiClient) -> None:
    status = kube_cluster.status()
    assert status["ready"] is True
    assert all(status["components"].values())
    assert kube_cluster.api_url.startswith("https://127.0.0.1:")
    nodes = client.CoreV1Api(api).list_node(label_selector="type=kwok").items
    assert len(nodes) == 2


def test_start_again_reuses_the_running_cluster(kube_cluster: KubeCluster) -> None:
    again = KubeCluster.start(kube_cluster.state_dir)
    assert again.api_port == kube_cluster.api_port
    assert again.status()["components"] == kube_cluster.status()["components"]


def test_server_side_applied_deployment_becomes_available_on_kwok_nodes(api: client.ApiClient) -> None:
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kube-test", "namespace": "default"},
          "data": {"greeting": "hello"}}
    core.patch_namespaced_config_map("kube-test", "default", cm, **APPLY)
    apps.patch_namespaced_deployment("kube-test", "default", deployment("kube-test"), **APPLY)

    dep = wait_available(apps, "kube-test")

    assert core.read_namespaced_config_map("kube-test", "default").data == {"greeting": "hello"}
    assert dep.spec.template.spec.containers[0].image == "127.0.0.1:5000/x:1"
    assert {m.manager for m in dep.metadata.managed_fields} >= {"shipline-test"}
    pods = core.list_namespaced_pod("default", label_selector="app=kube-test").items
    assert len(pods) == 2
    assert {p.spec.node_name for p in pods} <= {"kwok-node-0", "kwok-node-1"}
    assert all(p.status.phase == "Running" for p in pods)
