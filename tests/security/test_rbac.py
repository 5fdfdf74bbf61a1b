"""The sync service account of ``k8s/`` is least-privilege, checked on a real apiserver: the dev
overlay is applied, then ``kubectl auth can-i --as`` the account answers for what it may and may
not do, and a sample app syncs into ``apps`` with a client that impersonates it."""

from __future__ import annotations

import base64
import gzip
import json
import subprocess
from pathlib import Path

import pytest
from kubernetes import client, config

from devstack.kube import KubeCluster
from handlers.settings import ClusterConfig, EnvironmentConfig, GitLocation
from handlers.sync.inventory import OBJECTS_KEY
from handlers.sync.reconcile import sync_environment

ROOT = Path(__file__).resolve().parents[2]
SYNC_SA = "system:serviceaccount:shipline-system:shipline-sync"
APP = """apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: registry.example.com/acme/web:1.0.0}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: web-settings}
data: {greeting: hello}
"""


@pytest.fixture(scope="module")
def applied(kube_cluster: KubeCluster) -> KubeCluster:
    rendered = subprocess.run(["kubectl", "kustomize", str(ROOT / "k8s" / "overlays" / "dev")], check=True,
                              capture_output=True, text=True).stdout
    subprocess.run(["kubectl", "--kubeconfig", str(kube_cluster.kubeconfig), "apply", "--server-side",
                    "--force-conflicts", "-f", "-"], input=rendered, check=True, capture_output=True, text=True)
    return kube_cluster


def can_i(cluster: KubeCluster, verb: str, resource: str, namespace: str | None) -> bool:
    scope = ["-n", namespace] if namespace else ["--all-namespaces"]
    answer = subprocess.run(["kubectl", "--kubeconfig", str(cluster.kubeconfig), "auth", "can-i", verb, resource,
                             *scope, "--as", SYNC_SA], capture_output=True, text=True)
    return answer.stdout.strip() == "yes"


ALLOWED = [
    ("create", "deployments.apps", "apps"), ("patch", "deployments.apps", "apps"),
    ("delete", "deployments.apps", "apps"), ("list", "deployments.apps", "apps"),
    ("patch", "services", "apps"), ("delete", "services", "apps"),
    ("patch", "configmaps", "apps"), ("get", "configmaps", "apps"),  # the app's and the inventory
    ("list", "pods", "apps"),  # rollout health
]
DENIED = [
    ("get", "secrets", "kube-system"), ("get", "secrets", "shipline-system"), ("list", "secrets", "apps"),
    ("patch", "configmaps", "shipline-system"),  # Shipline's own config
    ("create", "deployments.apps", "default"), ("create", "configmaps", "default"),
    ("create", "clusterroles.rbac.authorization.k8s.io", None),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", None),
    ("create", "rolebindings.rbac.authorization.k8s.io", "apps"), ("create", "roles.rbac.authorization.k8s.io", "apps"),
    ("create", "pods/exec", "apps"), ("create", "pods", "apps"), ("create", "namespaces", None),
    ("delete", "namespaces", None), ("create", "customresourcedefinitions.apiextensions.k8s.io", None),
]


@pytest.mark.parametrize(("verb", "resource", "namespace"), ALLOWED)
def test_sync_account_may(applied: KubeCluster, verb: str, resource: str, namespace: str) -> None:
    assert can_i(applied, verb, resource, namespace)


@pytest.mark.parametrize(("verb", "resource", "namespace"), DENIED)
def test_sync_account_may_not(applied: KubeCluster, verb: str, resource: str, namespace: str | None) -> None:
    assert not can_i(applied, verb, resource, namespace)


def test_a_sample_app_syncs_into_apps_as_the_sync_account(applied: KubeCluster, tmp_path: Path) -> None:
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "app.yaml").write_text(APP)
    env = EnvironmentConfig(name="rbac-sample", git=GitLocation(url="http://unused.invalid/x.git", path="deploy"),
                            namespace="apps", cluster=ClusterConfig(kubeconfig=applied.kubeconfig),
                            health_timeout=60)
    api = config.new_client_from_config(str(applied.kubeconfig))
    api.set_default_header("Impersonate-User", SYNC_SA)
    try:
        result = sync_environment(env, tmp_path, "a" * 40, api_client=api)
        again = sync_environment(env, tmp_path, "a" * 40, api_client=api)  # drift check and inventory read
    finally:
        api.close()
    assert result.health.status == "Healthy", result.to_dict()
    assert {r.kind for r in result.applied} == {"Deployment", "Service", "ConfigMap"}
    assert again.unchanged == 3 and not again.applied
    admin = client.CoreV1Api(config.new_client_from_config(str(applied.kubeconfig)))
    inventory = admin.read_namespaced_config_map("shipline-inventory-rbac-sample", "apps")
    rows = json.loads(gzip.decompress(base64.b64decode(inventory.binary_data[OBJECTS_KEY])))
    assert "web-settings" in {name for _, _, _, name, *_ in rows}
