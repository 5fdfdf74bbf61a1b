"""The worker's live state on real control planes: the drift watcher asks for a sync within seconds
of a manual edit (and not for writes that are not drift), and environments on two clusters each
land only in their own cluster, with one cache per cluster."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from kubernetes import client, config

from devstack.kube import CONTEXT, KubeCluster
from handlers.settings import EnvironmentConfig
from handlers.sync import sync_environment
from service import livestate
from service.livestate import DriftWatcher, cache_for, caches
from service.syncrun import sync_now
from tests.handlers.sync.conftest import configmap, deployment, write

pytestmark = pytest.mark.stack


@pytest.fixture(autouse=True)
def fresh_caches():  # noqa: ANN201
    yield
    livestate.stop_all()  # no watch of this test outlives it


def env_on(cluster: KubeCluster, name: str, namespace: str,
           url: str = "http://127.0.0.1/unused.git") -> EnvironmentConfig:
    return EnvironmentConfig.model_validate({
        "name": name, "namespace": namespace, "git": {"url": url, "path": "deploy"},
        "cluster": {"kubeconfig": str(cluster.kubeconfig), "context": CONTEXT}, "health_timeout": 60})


def namespace_in(cluster: KubeCluster, name: str) -> client.ApiClient:
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig), context=CONTEXT)
    client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    return api


def test_the_drift_watcher_asks_for_a_sync_within_seconds_of_an_edit(kube_cluster: KubeCluster,
                                                                      tmp_path: Path) -> None:
    ns = "drift-watch"
    api = namespace_in(kube_cluster, ns)
    env = env_on(kube_cluster, ns, ns)
    (tmp_path / "deploy").mkdir()
    write(tmp_path, "deploy/web.yaml", deployment("web"))
    write(tmp_path, "deploy/cm.yaml", configmap("settings", a="1"))
    sync_environment(env, tmp_path, "rev1", cache=cache_for(env.cluster))
    asked: list[tuple[float, str]] = []
    busy = {"now": False}
    watcher = DriftWatcher([env], on_drift=lambda e, what: asked.append((time.monotonic(), what)),
                           busy=lambda e: busy["now"])
    watcher.start()
    time.sleep(1)
    try:
        _edits_and_drift(api, ns, asked, busy)
    finally:
        watcher.stop()


def _edits_and_drift(api: client.ApiClient, ns: str, asked: list[tuple[float, str]], busy: dict[str, bool]) -> None:

    client.CoreV1Api(api).patch_namespaced_config_map(
        "settings", ns, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings",
                                                                               "labels": {"team": "x"}}},
        field_manager="another-tool", _content_type="application/apply-patch+yaml")
    time.sleep(1.5)
    assert asked == [], "a field Shipline never set is not drift"

    edited = time.monotonic()
    client.AppsV1Api(api).patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 5}})
    deadline = time.monotonic() + 5
    while not asked and time.monotonic() < deadline:
        time.sleep(0.05)
    assert asked and "Deployment/drift-watch/web changed" in asked[0][1]
    assert asked[0][0] - edited < 2.0, "drift seen within seconds, not at the next reconcile"

    asked.clear()
    busy["now"] = True  # a sync of the environment runs: its own writes are not drift (checked after it)
    client.CoreV1Api(api).delete_namespaced_config_map("settings", ns)
    time.sleep(1.5)
    assert asked == []
    busy["now"] = False
    deadline = time.monotonic() + 5
    while not any("ConfigMap/drift-watch/settings deleted" in w for _, w in asked) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any("ConfigMap/drift-watch/settings deleted" in w for _, w in asked)


def git_remote(tmp_path: Path) -> tuple[str, Path]:
    bare, work = tmp_path / "remote.git", tmp_path / "work"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    subprocess.run(["git", "clone", "-q", str(bare), str(work)], check=True, capture_output=True)
    return str(bare), work


def push(work: Path) -> None:
    for args in (["add", "-A"], ["commit", "-qm", "manifests"], ["push", "-q", "origin", "HEAD:main"]):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-C", str(work), *args],
                       check=True, capture_output=True)


def test_each_environment_lands_only_in_its_own_cluster(kube_cluster: KubeCluster, tmp_path: Path,
                                                        tmp_path_factory: pytest.TempPathFactory) -> None:
    second = KubeCluster.start(tmp_path_factory.mktemp("second-cluster"), nodes=1)
    try:
        url, work = git_remote(tmp_path)
        write(work, "deploy/cm.yaml", configmap("settings", a="1"))
        push(work)
        apis = {"staging": namespace_in(kube_cluster, "mc-staging"), "production": namespace_in(second, "mc-prod")}
        staging = env_on(kube_cluster, "staging", "mc-staging", url)
        production = env_on(second, "production", "mc-prod", url)

        for env in (staging, production):
            assert sync_now(env, tmp_path / "state").health.status == "Healthy"

        def names(api: client.ApiClient, ns: str) -> set[str]:
            return {c.metadata.name for c in client.CoreV1Api(api).list_namespaced_config_map(ns).items}

        assert "settings" in names(apis["staging"], "mc-staging")
        assert "settings" in names(apis["production"], "mc-prod")
        second_api = config.new_client_from_config(config_file=str(second.kubeconfig), context=CONTEXT)
        first_api = apis["staging"]
        assert "mc-staging" not in {n.metadata.name for n in client.CoreV1Api(second_api).list_namespace().items}
        assert "mc-prod" not in {n.metadata.name for n in client.CoreV1Api(first_api).list_namespace().items}
        clusters = {livestate.cluster_name(staging.cluster), livestate.cluster_name(production.cluster)}
        assert len(clusters) == 2 and clusters <= set(caches()), "one cache per cluster"
        assert cache_for(staging.cluster) is not cache_for(production.cluster)
        assert cache_for(staging.cluster).objects_of("production") == []
    finally:
        second.stop()
