"""Kustomize and Jinja2 targets end to end: what lands in the cluster is what the overlay /
templates define (plus Shipline's label and annotations)."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client

from devstack.kube import KubeCluster
from handlers.sync import sync_environment
from tests.handlers.sync.conftest import configmap, deployment, make_env, write

pytestmark = pytest.mark.stack


def test_kustomize_overlay_is_applied_as_kustomize_builds_it(
    kube_cluster: KubeCluster, api: client.ApiClient, namespace: str, checkout: Path
) -> None:
    write(checkout, "base/kustomization.yaml", "resources: [app.yaml, config.yaml]\n")
    write(checkout, "base/app.yaml", deployment("web"))
    write(checkout, "base/config.yaml", configmap("settings", greeting="hello"))
    write(checkout, "deploy/kustomization.yaml", f"""
        namespace: {namespace}
        resources: [../base]
        namePrefix: stg-
        replicas: [{{name: web, count: 1}}]
        images: [{{name: 127.0.0.1:5000/app, newTag: "9"}}]
        """)
    env = make_env(kube_cluster, namespace, render={"mode": "kustomize"})

    result = sync_environment(env, checkout, "rev1", api_client=api)

    assert sorted(r.name for r in result.applied) == ["stg-settings", "stg-web"]
    assert result.images == ("127.0.0.1:5000/app:9",)
    assert result.health.status == "Healthy", result.health
    dep = client.AppsV1Api(api).read_namespaced_deployment("stg-web", namespace)
    assert dep.spec.replicas == 1 and dep.status.available_replicas == 1
    assert dep.metadata.labels["shipline.dev/target"] == namespace


def test_jinja2_target_is_applied_with_its_vars(
    kube_cluster: KubeCluster, api: client.ApiClient, namespace: str, checkout: Path
) -> None:
    write(checkout, "config/staging.yaml", "greeting: hi\nreplicas: 1\n")
    write(checkout, "deploy/config.yaml", """
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: settings}
        data:
          greeting: "{{ greeting }}"
          env: "{{ shipline.env }}"
        """)
    write(checkout, "deploy/app.yaml", deployment("web").replace("replicas: 2", "replicas: {{ replicas }}"))
    env = make_env(kube_cluster, namespace, render={"mode": "jinja2", "vars": ["config/staging.yaml"]})

    result = sync_environment(env, checkout, "rev1", api_client=api)

    assert result.health.status == "Healthy", result.health
    cm = client.CoreV1Api(api).read_namespaced_config_map("settings", namespace)
    assert cm.data == {"greeting": "hi", "env": namespace}
    assert client.AppsV1Api(api).read_namespaced_deployment("web", namespace).spec.replicas == 1
