"""The seed's kluctl project synced by the engine against the real control plane: phase by phase
across its barriers (namespaces, the chart's CRDs, the migrations Job before the services), then a
removed service pruned, and a barrier that cannot pass stops the later phases."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client

from devstack.kube import CONTEXT, KubeCluster
from handlers.sync import sync_environment
from tests.handlers.sync.kluctl.seed import kluctl_env, put, seed_apart

pytestmark = pytest.mark.stack


def project(tmp_path: Path, suffix: str) -> Path:
    return seed_apart(tmp_path, suffix)


def environment(kube_cluster: KubeCluster, suffix: str, health_timeout: int = 90):  # noqa: ANN201
    return kluctl_env("staging", cluster={"kubeconfig": str(kube_cluster.kubeconfig), "context": CONTEXT},
                      namespace=f"shop-staging-{suffix}", health_timeout=health_timeout,
                      force_conflicts=True)  # the chart's CRD is cluster-wide: other tests' targets label it too


def test_the_seed_project_syncs_across_its_barriers_and_prunes_a_removed_service(
        kube_cluster: KubeCluster, api: client.ApiClient, tmp_path: Path) -> None:
    root = project(tmp_path, "ph")
    env = environment(kube_cluster, "ph")

    result = sync_environment(env, root, "rev1", api_client=api)

    assert result.health.status == "Healthy", result.health
    order = [(r.kind, r.name) for r in result.applied]
    kinds = [kind for kind, _ in order]
    assert kinds.index("CustomResourceDefinition") < kinds.index("IngressRoute"), "CRDs before their objects"
    job = kinds.index("Job")
    assert job < order.index(("Deployment", "frontend")), "the migrations' barrier before the services"
    assert job < order.index(("Deployment", "backend"))
    apps = client.AppsV1Api(api)
    names = {d.metadata.name for d in apps.list_namespaced_deployment("shop-staging-ph").items}
    assert names >= {"frontend", "backend"}
    job = client.BatchV1Api(api).list_namespaced_job("shop-staging-ph").items[0]
    assert job.status.succeeded == 1

    services = root / "services" / "deployment.yaml"
    services.write_text(services.read_text().replace("  - include: worker\n", ""))
    pruned = sync_environment(env, root, "rev2", api_client=api)

    assert {r.name for r in pruned.pruned} >= {"worker"}, pruned.pruned
    assert "worker" not in {d.metadata.name for d in apps.list_namespaced_deployment("shop-staging-ph").items}


def test_a_barrier_that_cannot_pass_stops_the_later_phases(kube_cluster: KubeCluster, api: client.ApiClient,
                                                           tmp_path: Path) -> None:
    root = project(tmp_path, "bl")
    put(root, "services/migrations/k8s/never.yaml", """
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: never-ready
          annotations:
            kluctl.io/wait-readiness: "true"
            kluctl.io/is-ready: "false"
        """)
    env = environment(kube_cluster, "bl", health_timeout=5)

    result = sync_environment(env, root, "rev1", api_client=api)

    assert result.health.status == "Degraded" and "barrier" in result.health.reason, result.health
    assert "never-ready" in result.health.reason
    deployments = client.AppsV1Api(api).list_namespaced_deployment("shop-staging-bl").items
    assert deployments == [], "nothing after the barrier was applied"
