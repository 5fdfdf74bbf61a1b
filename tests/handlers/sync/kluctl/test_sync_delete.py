"""Prune and delete by the kluctl target's discriminator, against the real control plane: objects
kluctl itself deployed (not in Shipline's inventory) are pruned once the project no longer has
them, objects marked to be kept or written by someone else stay, and ``delete: true`` removes
everything the environment deployed, its inventory last."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client

from devstack.kube import CONTEXT, KubeCluster
from handlers.sync import sync_environment
from handlers.sync.inventory import PREFIX
from handlers.sync.kluctl.prune import DISCRIMINATOR_LABEL
from tests.handlers.sync.kluctl.seed import kluctl_env, put

pytestmark = pytest.mark.stack


def project(root: Path, suffix: str, *, items: list[str]) -> Path:
    put(root, ".kluctl.yaml", f"""
        discriminator: "del-{suffix}-{{{{ target.name }}}}"
        targets:
          - name: staging
            context: staging.example.com
        """)
    put(root, "deployment.yaml", "deployments:\n" + "".join(f"  - path: {item}\n" for item in items))
    for item in ("namespace", "web", "extra"):
        kind = ("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: del-{s}\n" if item == "namespace" else
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {i}\n  namespace: del-{s}\ndata: {{a: b}}\n")
        put(root, f"{item}/object.yaml", kind.format(s=suffix, i=item))
    return root


def environment(kube_cluster: KubeCluster, suffix: str, **extra: object):  # noqa: ANN201
    return kluctl_env("staging", cluster={"kubeconfig": str(kube_cluster.kubeconfig), "context": CONTEXT},
                      namespace=f"del-{suffix}", health_timeout=30, **extra)


def kluctl_deployed(core: client.CoreV1Api, namespace: str, name: str, labels: dict[str, str],
                    annotations: dict[str, str] | None = None, manager: str = "kluctl") -> None:
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels=labels, annotations=annotations),
                              data={"from": manager})
    core.create_namespaced_config_map(namespace, body, field_manager=manager)


def names(core: client.CoreV1Api, namespace: str) -> set[str]:
    return {c.metadata.name for c in core.list_namespaced_config_map(namespace).items} - {"kube-root-ca.crt"}


def test_objects_kluctl_deployed_are_pruned_by_discriminator_and_kept_ones_stay(
        kube_cluster: KubeCluster, api: client.ApiClient, tmp_path: Path) -> None:
    root = project(tmp_path, "pr", items=["namespace", "web"])
    env = environment(kube_cluster, "pr")
    core = client.CoreV1Api(api)
    assert sync_environment(env, root, "rev1", api_client=api).health.status == "Healthy"
    mine = {DISCRIMINATOR_LABEL: "del-pr-staging"}
    kluctl_deployed(core, "del-pr", "left-by-kluctl", mine)
    kluctl_deployed(core, "del-pr", "kept", mine, {"kluctl.io/skip-delete": "true"})
    kluctl_deployed(core, "del-pr", "someone-elses", mine, manager="kubectl-create")
    kluctl_deployed(core, "del-pr", "other-target", {DISCRIMINATOR_LABEL: "del-pr-production"})

    result = sync_environment(env, root, "rev2", api_client=api)

    assert [r.name for r in result.pruned] == ["left-by-kluctl"], result.pruned
    assert names(core, "del-pr") == {"web", "kept", "someone-elses", "other-target", f"{PREFIX}staging"}


def test_delete_true_removes_everything_the_environment_deployed(
        kube_cluster: KubeCluster, api: client.ApiClient, tmp_path: Path) -> None:
    root = project(tmp_path, "dl", items=["namespace", "web", "extra"])
    core = client.CoreV1Api(api)
    assert sync_environment(environment(kube_cluster, "dl"), root, "rev1", api_client=api).health.status == "Healthy"
    kluctl_deployed(core, "del-dl", "left-by-kluctl", {DISCRIMINATOR_LABEL: "del-dl-staging"})

    result = sync_environment(environment(kube_cluster, "dl", delete=True), root, "rev1", api_client=api)

    assert result.health.status == "Deleted", result.health
    assert {(r.kind, r.name) for r in result.pruned} == {
        ("Namespace", "del-dl"), ("ConfigMap", "web"), ("ConfigMap", "extra"), ("ConfigMap", "left-by-kluctl")}
    remaining = [n for n in core.list_namespace().items if n.metadata.name == "del-dl"]
    assert all(n.metadata.deletion_timestamp is not None for n in remaining), "gone or terminating"
    again = sync_environment(environment(kube_cluster, "dl", delete=True), root, "rev1", api_client=api)
    assert again.health.status == "Deleted" and again.pruned == (), "nothing left to delete twice"
