"""sync_environment against the real control plane with kwok nodes: apply, idempotence, rollout,
prune and its guards, dry-run."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client

from devstack.kube import KubeCluster
from handlers.sync import sync_environment
from handlers.sync.inventory import read_inventory
from handlers.sync.kubeapi import KubeApi
from handlers.sync.objects import ObjRef
from handlers.sync.reconcile import EmptyRender
from tests.handlers.sync.conftest import IMAGE, configmap, deployment, make_env, write

pytestmark = pytest.mark.stack


def resource_versions(api: client.ApiClient, ns: str) -> dict[str, str]:
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    objs = [*core.list_namespaced_config_map(ns).items, *apps.list_namespaced_deployment(ns).items]
    return {f"{type(o).__name__}/{o.metadata.name}": o.metadata.resource_version for o in objs}


def test_first_sync_applies_labelled_objects_and_records_inventory(
    kube_cluster: KubeCluster, api: client.ApiClient, namespace: str, checkout: Path
) -> None:
    write(checkout, "deploy/config.yaml", configmap("settings", greeting="hello"))
    write(checkout, "deploy/app.yaml", deployment("web"))
    env = make_env(kube_cluster, namespace)

    result = sync_environment(env, checkout, "rev1", api_client=api)

    assert sorted(str(r) for r in result.applied) == [f"ConfigMap/{namespace}/settings",
                                                       f"Deployment/{namespace}/web"]
    assert result.health.status == "Healthy", result.health
    assert result.images == (f"{IMAGE}:1",)
    cm = client.CoreV1Api(api).read_namespaced_config_map("settings", namespace)
    assert cm.data == {"greeting": "hello"}
    assert cm.metadata.labels["shipline.dev/target"] == namespace
    assert "shipline.dev/revision" not in (cm.metadata.annotations or {}), "the revision lives in the inventory"
    assert "shipline" in {m.manager for m in cm.metadata.managed_fields}
    dep = client.AppsV1Api(api).read_namespaced_deployment("web", namespace)
    assert dep.status.available_replicas == 2
    inventory = read_inventory(KubeApi(api), env)
    assert inventory is not None and inventory.revision == "rev1"
    assert {r.name for r in inventory.objects} == {"settings", "web"}
    assert inventory.images == (f"{IMAGE}:1",)


def test_resync_of_the_same_revision_changes_nothing(
    kube_cluster: KubeCluster, api: client.ApiClient, namespace: str, checkout: Path
) -> None:
    write(checkout, "deploy/config.yaml", configmap("settings", greeting="hello"))
    write(checkout, "deploy/app.yaml", deployment("web"))
    env = make_env(kube_cluster, namespace)
    sync_environment(env, checkout, "rev1", api_client=api)
    before = resource_versions(api, namespace)

    again = sync_environment(env, checkout, "rev1", api_client=api)

    assert resource_versions(api, namespace) == before  # inventory ConfigMap included
    assert again.applied == () and again.pruned == () and again.drift == ()
    assert again.unchanged == 2


def test_image_change_rolls_out_and_becomes_healthy(
    kube_cluster: KubeCluster, api: client.ApiClient, namespace: str, checkout: Path
) -> None:
    write(checkout, "deploy/app.yaml", deployment("web", tag="1"))
    env = make_env(kube_cluster, namespace)
    sync_environment(env, checkout, "rev1", api_client=api)
    write(checkout, "deploy/app.yaml", deployment("web", tag="2"))

    result = sync_environment(env, checkout, "rev2", api_client=api)

    assert [str(r) for r in result.applied] == [f"Deployment/{namespace}/web"]
    assert result.health.status == "Healthy", result.health
    assert result.images == (f"{IMAGE}:2",)
    dep = client.AppsV1Api(api).read_namespaced_deployment("web", namespace)
    assert dep.spec.template.spec.containers[0].image == f"{IMAGE}:2"
    assert dep.status.updated_replicas == dep.status.available_replicas == 2
    assert dep.status.observed_generation == dep.metadata.generation == 2


def test_removed_manifest_is_pruned(
    kube_cluster: KubeCluster, api: client.ApiClient, namespace: str, checkout: Path
) -> None:
    write(checkout, "deploy/keep.yaml", configmap("keep", a="1"))
    gone = write(checkout, "deploy/gone.yaml", configmap("gone", b="2"))
    env = make_env(kube_cluster, namespace)
    sync_environment(env, checkout, "rev1", api_client=api)
    gone.unlink()

    result = sync_environment(env, checkout, "rev2", api_client=api)

    assert result.pruned == (ObjRef("v1", "ConfigMap", namespace, "gone"),)
    names = {c.metadata.name for c in client.CoreV1Api(api).list_namespaced_config_map(namespace).items}
    assert "gone" not in names and "keep" in names


def test_objects_shipline_never_applied_are_left_alone(
    kube_cluster: KubeCluster, api: client.ApiClient, namespace: str, checkout: Path
) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "handmade"}, "data": {"x": "1"}})
    write(checkout, "deploy/config.yaml", configmap("settings", a="1"))
    env = make_env(kube_cluster, namespace)
    sync_environment(env, checkout, "rev1", api_client=api)
    (checkout / "deploy/config.yaml").write_text(configmap("other", a="1"))

    result = sync_environment(env, checkout, "rev2", api_client=api)

    assert [r.name for r in result.pruned] == ["settings"]
    assert core.read_namespaced_config_map("handmade", namespace).data == {"x": "1"}


def test_inventory_object_that_lost_its_label_is_not_pruned(
    kube_cluster: KubeCluster, api: client.ApiClient, namespace: str, checkout: Path
) -> None:
    core = client.CoreV1Api(api)
    cm = write(checkout, "deploy/config.yaml", configmap("adopted", a="1"))
    env = make_env(kube_cluster, namespace)
    sync_environment(env, checkout, "rev1", api_client=api)
    core.patch_namespaced_config_map("adopted", namespace,
                                     [{"op": "remove", "path": "/metadata/labels/shipline.dev~1target"}])
    cm.unlink()
    write(checkout, "deploy/other.yaml", configmap("other", a="1"))

    result = sync_environment(env, checkout, "rev2", api_client=api)

    assert result.pruned == ()
    assert core.read_namespaced_config_map("adopted", namespace).data == {"a": "1"}
    assert any("adopted" in w for w in result.warnings)


def test_empty_render_refuses_to_prune(
    kube_cluster: KubeCluster, api: client.ApiClient, namespace: str, checkout: Path
) -> None:
    cm = write(checkout, "deploy/config.yaml", configmap("settings", a="1"))
    env = make_env(kube_cluster, namespace)
    sync_environment(env, checkout, "rev1", api_client=api)
    cm.write_text("---\n# everything commented out\n---\n")

    with pytest.raises(EmptyRender, match="refusing to prune"):
        sync_environment(env, checkout, "rev2", api_client=api)

    assert client.CoreV1Api(api).read_namespaced_config_map("settings", namespace).data == {"a": "1"}
    inventory = read_inventory(KubeApi(api), env)
    assert inventory is not None and inventory.revision == "rev1"


def test_empty_render_prunes_everything_when_allowed(
    kube_cluster: KubeCluster, api: client.ApiClient, namespace: str, checkout: Path
) -> None:
    cm = write(checkout, "deploy/config.yaml", configmap("settings", a="1"))
    env = make_env(kube_cluster, namespace, allow_empty=True)
    sync_environment(env, checkout, "rev1", api_client=api)
    cm.unlink()

    result = sync_environment(env, checkout, "rev2", api_client=api)

    assert [r.name for r in result.pruned] == ["settings"]


def test_dry_run_reports_changes_but_writes_nothing(
    kube_cluster: KubeCluster, api: client.ApiClient, namespace: str, checkout: Path
) -> None:
    write(checkout, "deploy/config.yaml", configmap("settings", a="1"))
    env = make_env(kube_cluster, namespace)

    result = sync_environment(env, checkout, "rev1", api_client=api, dry_run=True)

    assert [r.name for r in result.applied] == ["settings"] and result.dry_run
    names = {c.metadata.name for c in client.CoreV1Api(api).list_namespaced_config_map(namespace).items}
    assert names == {"kube-root-ca.crt"}  # the controller-manager's, there before the test (the fixture)
    assert read_inventory(KubeApi(api), env) is None


def test_objects_without_namespace_get_the_environment_namespace_and_crds_go_first(
    kube_cluster: KubeCluster, api: client.ApiClient, namespace: str, checkout: Path
) -> None:
    group = f"{namespace}.example.com"
    write(checkout, "deploy/cr.yaml", f"""
        apiVersion: {group}/v1
        kind: Widget
        metadata: {{name: w1}}
        spec: {{size: 3}}
        """)
    write(checkout, "deploy/crd.yaml", f"""
        apiVersion: apiextensions.k8s.io/v1
        kind: CustomResourceDefinition
        metadata: {{name: widgets.{group}}}
        spec:
          group: {group}
          scope: Namespaced
          names: {{plural: widgets, singular: widget, kind: Widget}}
          versions:
            - name: v1
              served: true
              storage: true
              schema:
                openAPIV3Schema:
                  type: object
                  x-kubernetes-preserve-unknown-fields: true
        """)
    env = make_env(kube_cluster, namespace)

    result = sync_environment(env, checkout, "rev1", api_client=api)

    assert [r.kind for r in result.applied] == ["CustomResourceDefinition", "Widget"]
    widget = client.CustomObjectsApi(api).get_namespaced_custom_object(group, "v1", namespace, "widgets", "w1")
    assert widget["spec"] == {"size": 3}
    assert widget["metadata"]["labels"]["shipline.dev/target"] == namespace


def test_dry_run_of_a_new_namespace_and_crd_with_its_objects_writes_nothing(
    kube_cluster: KubeCluster, api: client.ApiClient, namespace: str, checkout: Path
) -> None:
    fresh = f"{namespace}-new"
    group = f"{namespace}.example.com"
    write(checkout, "deploy/all.yaml", f"""
        apiVersion: v1
        kind: Namespace
        metadata: {{name: {fresh}}}
        ---
        apiVersion: apiextensions.k8s.io/v1
        kind: CustomResourceDefinition
        metadata: {{name: gadgets.{group}}}
        spec:
          group: {group}
          scope: Namespaced
          names: {{plural: gadgets, kind: Gadget}}
          versions: [{{name: v1, served: true, storage: true,
                      schema: {{openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}}}}}]
        ---
        apiVersion: {group}/v1
        kind: Gadget
        metadata: {{name: g1, namespace: {fresh}}}
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata: {{name: c1, namespace: {fresh}}}
        """)
    env = make_env(kube_cluster, namespace)

    result = sync_environment(env, checkout, "rev1", api_client=api, dry_run=True)

    assert [r.kind for r in result.applied] == ["Namespace", "CustomResourceDefinition", "Gadget", "ConfigMap"]
    assert fresh not in {n.metadata.name for n in client.CoreV1Api(api).list_namespace().items}
    crds = client.ApiextensionsV1Api(api).list_custom_resource_definition().items
    assert f"gadgets.{group}" not in {c.metadata.name for c in crds}


def test_render_with_its_own_namespace_applies_into_it(
    kube_cluster: KubeCluster, api: client.ApiClient, namespace: str, checkout: Path
) -> None:
    fresh = f"{namespace}-own"
    write(checkout, "deploy/ns.yaml", f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {fresh}}}\n")
    app = deployment("web").replace("name: web\n", f"name: web\n  namespace: {fresh}\n", 1)
    write(checkout, "deploy/app.yaml", app)
    env = make_env(kube_cluster, namespace)

    result = sync_environment(env, checkout, "rev1", api_client=api)

    assert [str(r) for r in result.applied] == [f"Namespace/{fresh}", f"Deployment/{fresh}/web"]
    assert result.health.status == "Healthy", result.health
