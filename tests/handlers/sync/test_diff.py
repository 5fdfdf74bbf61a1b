"""``diff_environment``: a server-side dry-run per object and field-level changes; writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client

from devstack.kube import KubeCluster
from handlers.sync import diff_environment, sync_environment
from tests.handlers.sync.conftest import IMAGE, configmap, deployment, make_env, write

pytestmark = pytest.mark.stack


def test_diff_lists_updates_creates_prunes_and_unchanged_objects(
    kube_cluster: KubeCluster, api: client.ApiClient, namespace: str, checkout: Path
) -> None:
    write(checkout, "deploy/app.yaml", deployment("web", tag="1"))
    write(checkout, "deploy/same.yaml", configmap("same", a="1"))
    old = write(checkout, "deploy/old.yaml", configmap("old", a="1"))
    env = make_env(kube_cluster, namespace)
    sync_environment(env, checkout, "rev1", api_client=api)
    write(checkout, "deploy/app.yaml", deployment("web", tag="2"))
    write(checkout, "deploy/new.yaml", configmap("new", b="2"))
    old.unlink()
    before = client.AppsV1Api(api).read_namespaced_deployment("web", namespace).metadata.resource_version

    diffs = {d.ref: d for d in diff_environment(env, checkout, "rev2", api_client=api)}

    assert {ref: d.action for ref, d in diffs.items()} == {
        f"Deployment/{namespace}/web": "update", f"ConfigMap/{namespace}/same": "unchanged",
        f"ConfigMap/{namespace}/new": "create", f"ConfigMap/{namespace}/old": "prune",
    }
    web = diffs[f"Deployment/{namespace}/web"]
    assert [c.to_dict() for c in web.changes] == [{
        "path": "spec.template.spec.containers[app].image", "live": f"{IMAGE}:1", "desired": f"{IMAGE}:2"}]
    after = client.AppsV1Api(api).read_namespaced_deployment("web", namespace)
    assert after.metadata.resource_version == before
    assert client.CoreV1Api(api).read_namespaced_config_map("old", namespace).data == {"a": "1"}
