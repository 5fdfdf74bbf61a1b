"""Rollout health after apply: Healthy when Available; Degraded within health_timeout when a
Deployment can never become Available; Jobs complete."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kubernetes import client

from devstack.kube import KubeCluster
from handlers.sync import sync_environment
from tests.handlers.sync.conftest import deployment, make_env, write

pytestmark = pytest.mark.stack


def test_deployment_that_cannot_schedule_ends_degraded_within_health_timeout(
    kube_cluster: KubeCluster, api: client.ApiClient, namespace: str, checkout: Path
) -> None:
    write(checkout, "deploy/app.yaml", deployment("stuck", extra_pod_spec="nodeSelector: {disk: nowhere}\n"))
    env = make_env(kube_cluster, namespace, health_timeout=4)
    began = time.monotonic()

    result = sync_environment(env, checkout, "rev1", api_client=api)

    assert result.health.status == "Degraded"
    assert f"Deployment/{namespace}/stuck" in result.health.reason
    assert "not healthy after 4s" in result.health.reason
    assert time.monotonic() - began < 15


def test_progress_deadline_exceeded_is_degraded_before_the_timeout(
    kube_cluster: KubeCluster, api: client.ApiClient, namespace: str, checkout: Path
) -> None:
    text = deployment("hungry", replicas=1, extra_pod_spec="""
        nodeSelector: {disk: nowhere}
        """).replace("spec:\n  replicas: 1", "spec:\n  progressDeadlineSeconds: 1\n  replicas: 1")
    write(checkout, "deploy/app.yaml", text)
    env = make_env(kube_cluster, namespace, health_timeout=60)

    result = sync_environment(env, checkout, "rev1", api_client=api)

    assert result.health.status == "Degraded"
    assert "progress deadline exceeded" in result.health.reason
    assert result.duration < 50


def test_completed_job_is_healthy(
    kube_cluster: KubeCluster, api: client.ApiClient, namespace: str, checkout: Path
) -> None:
    write(checkout, "deploy/job.yaml", """
        apiVersion: batch/v1
        kind: Job
        metadata: {name: migrate}
        spec:
          template:
            spec:
              restartPolicy: Never
              containers: [{name: m, image: 127.0.0.1:5000/migrate:1}]
        """)
    env = make_env(kube_cluster, namespace, health_timeout=60)

    result = sync_environment(env, checkout, "rev1", api_client=api)

    assert result.health.status == "Healthy", result.health
    assert result.images == ("127.0.0.1:5000/migrate:1",)
