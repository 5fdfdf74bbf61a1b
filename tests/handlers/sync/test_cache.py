"""The cluster cache against the real apiserver: list + watch of what Shipline manages, a
summary per object, a relist when the resourceVersion is too old, one watch for all namespaces
when allowed."""

from __future__ import annotations

import gc
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
from kubernetes import client

from devstack.kube import KubeCluster
from handlers.sync import sync_environment
from handlers.sync.cache import ClusterCache, Scope
from handlers.sync.kubeapi import KubeApi, Resource
from handlers.sync.objects import ObjRef
from tests.handlers.sync.conftest import configmap, deployment, make_env, write

pytestmark = pytest.mark.stack


def until(check, timeout: float = 10.0):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.05)


@pytest.fixture
def cache(api: client.ApiClient):  # noqa: ANN201
    c = ClusterCache("test", KubeApi(api))
    yield c
    c.stop()


def test_the_cache_follows_creates_changes_and_deletes(kube_cluster: KubeCluster, api: client.ApiClient,
                                                       namespace: str, checkout: Path, cache: ClusterCache) -> None:
    env = make_env(kube_cluster, namespace)
    write(checkout, "deploy/a.yaml", configmap("a", k="1"))
    write(checkout, "deploy/web.yaml", deployment("web"))
    sync_environment(env, checkout, "rev1", cache=cache)
    events: list[tuple[str, str]] = []
    cache.subscribe(lambda kind, live: events.append((kind, live.ref.name)))
    core = client.CoreV1Api(api)
    ref = ObjRef("v1", "ConfigMap", namespace, "a")
    first = cache.get(ref)
    assert first is not None and first.target == namespace and first.owned

    core.patch_namespaced_config_map("a", namespace, {"data": {"k": "2"}})
    changed = until(lambda: (c := cache.get(ref)) and c.resource_version != first.resource_version and c)
    assert changed.owned != first.owned, "a field Shipline owns changed: its owned hash moves"
    web = cache.get(ObjRef("apps/v1", "Deployment", namespace, "web"))
    assert web is not None and web.health is not None and web.health.status == "Healthy"
    core.delete_namespaced_config_map("a", namespace)
    until(lambda: cache.get(ref) is None)
    assert ("MODIFIED", "a") in events and ("DELETED", "a") in events
    assert all(s["state"] == "synced" for s in cache.status())


def test_a_namespaced_kind_is_watched_once_for_every_namespace(kube_cluster: KubeCluster, api: client.ApiClient,
                                                                namespace: str, checkout: Path,
                                                                cache: ClusterCache) -> None:
    write(checkout, "deploy/a.yaml", configmap("a", k="1"))
    for suffix in ("one", "two"):
        client.CoreV1Api(api).create_namespace({"metadata": {"name": f"{namespace}-{suffix}"}})
        env = make_env(kube_cluster, f"{namespace}-{suffix}")
        sync_environment(env, checkout, "rev1", cache=cache)
    scopes = [s for s in cache.status() if s["scope"].startswith("configmaps.")]
    assert [s["scope"] for s in scopes] == ["configmaps.v1"], "one cluster-wide watch, not one per namespace"
    assert len(cache.objects_of(f"{namespace}-one")) == 1 and len(cache.objects_of(f"{namespace}-two")) == 1


def compact_etcd(cluster: KubeCluster) -> None:
    """Compact etcd at its current revision (its JSON gateway): older resourceVersions are gone."""
    import base64

    import httpx

    url = f"http://127.0.0.1:{cluster.etcd_port}/v3/kv"
    revision = httpx.post(f"{url}/range", json={"key": base64.b64encode(b"/").decode()}).json()["header"]["revision"]
    httpx.post(f"{url}/compaction", json={"revision": revision, "physical": True}).raise_for_status()


def test_a_watch_whose_resource_version_is_too_old_relists(kube_cluster: KubeCluster, api: client.ApiClient,
                                                           namespace: str, checkout: Path,
                                                           cache: ClusterCache) -> None:
    write(checkout, "deploy/a.yaml", configmap("a", k="1"))
    sync_environment(make_env(kube_cluster, namespace), checkout, "rev1", api_client=api)
    resource = cache.api.resource("v1", "ConfigMap")
    old = client.CoreV1Api(api).read_namespaced_config_map("a", namespace).metadata.resource_version
    client.CoreV1Api(api).patch_namespaced_config_map("a", namespace, {"data": {"k": "2"}})
    compact_etcd(kube_cluster)  # and a restarted apiserver has no watch history before now: `old` is gone
    kube_cluster.restart_apiserver()
    stale = Scope(resource, namespace, state="synced", resource_version=old)
    threading.Thread(target=cache._run, args=(stale,), daemon=True).start()

    until(lambda: stale.relists >= 1 and stale.state == "synced" and stale.resource_version != "1", timeout=30)

    assert cache.get(ObjRef("v1", "ConfigMap", namespace, "a")) is not None, "the relist brought the object in"


def _watched(resource_kind: str, i: int) -> dict:
    meta = {"name": f"obj-{i:05d}", "namespace": f"env-{i % 50:02d}", "resourceVersion": str(10_000 + i),
            "generation": 1, "labels": {"shipline.dev/target": f"env-{i % 50:02d}"},
            "managedFields": [{"manager": "shipline", "operation": "Apply", "fieldsType": "FieldsV1",
                               "fieldsV1": {"f:data": {"f:k": {}}}}]}
    obj = {"metadata": meta, "data": {"k": "v" * 40}}
    if resource_kind == "Deployment":
        obj |= {"spec": {"replicas": 0}, "status": {"observedGeneration": 1}}
    return obj


def test_the_footprint_is_what_the_summaries_take_and_is_given_back_on_delete() -> None:
    """``footprint()`` against what Python allocated for 3,000 watched objects (tracemalloc), and
    after changes and deletes: a count that drifted from the summaries it keeps would show here."""
    resources = [Resource("v1", "ConfigMap", "configmaps", True),
                 Resource("apps/v1", "Deployment", "deployments", True)]
    cache = ClusterCache("accounting", api=None)  # type: ignore[arg-type] - no thread runs: events are fed
    scopes = [cache._scopes.setdefault((r.api_version, r.plural, ""), Scope(r, "")) for r in resources]
    feed = [(scopes[i % 2], resources[i % 2].kind, i) for i in range(3000)]
    empty = cache.footprint()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for scope, kind, i in feed:  # each object parsed here, as from the watch: its strings are the summary's
            cache._apply_event(scope, {"type": "ADDED", "raw_object": _watched(kind, i)})
        gc.collect()
        allocated = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    held = cache.footprint() - empty
    assert len(cache) == 3000
    assert 0.8 * allocated <= held <= 1.3 * allocated, (held, allocated)
    assert 300 * 3000 <= held <= 1500 * 3000, "per object: a few hundred bytes, under a kilobyte and a half"

    for scope, kind, i in feed[::2]:
        obj = _watched(kind, i)
        obj["metadata"]["resourceVersion"] += "1"
        cache._apply_event(scope, {"type": "MODIFIED", "raw_object": obj})
    assert abs(cache.footprint() - empty - held) < 0.02 * held, "a change replaces a summary: about the same"
    for scope, kind, i in feed:
        cache._apply_event(scope, {"type": "DELETED", "raw_object": _watched(kind, i)})
    assert len(cache) == 0
    assert cache._entry_bytes == 0, "every summary and key counted in was counted out"
