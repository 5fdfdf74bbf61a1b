"""The seed project's staging render applied to the real test cluster phase by phase, with plain
server-side apply (``kubectl apply --server-side``) and the readiness predicate between phases,
as the sync engine will do it: the barrier is what makes the services' IngressRoutes applicable."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from devstack.kube import CONTEXT, KubeCluster
from handlers.sync.objects import ObjRef
from handlers.sync.readiness import is_ready
from handlers.sync.render import render_plan
from tests.handlers.sync.kluctl.seed import kluctl_env, seed_apart


def kubectl(cluster: KubeCluster, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kubectl", "--kubeconfig", str(cluster.kubeconfig), "--context", CONTEXT, *args],
                          input=stdin, capture_output=True, text=True, timeout=120, check=False)


def apply(cluster: KubeCluster, objects: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    return kubectl(cluster, "apply", "--server-side", "--field-manager", "shipline-test", "-f", "-",
                   stdin=yaml.safe_dump_all(objects))


def live(cluster: KubeCluster, ref: ObjRef) -> dict[str, Any] | None:
    kind = f"{ref.kind}.{ref.group}" if ref.group else ref.kind
    args = ["get", kind, ref.name, "-o", "json"] + (["-n", ref.namespace] if ref.namespace else [])
    proc = kubectl(cluster, *args)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def wait_ready(cluster: KubeCluster, refs: tuple[ObjRef, ...], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    for ref in refs:
        while True:
            obj = live(cluster, ref)
            answer = is_ready(obj) if obj is not None else "not found"
            if answer is True:
                break
            assert not str(answer).startswith("failed"), f"{ref}: {answer}"
            assert time.monotonic() < deadline, f"{ref} not ready after {timeout}s: {answer}"
            time.sleep(0.3)


def test_phases_apply_in_order_and_each_barrier_waits_for_what_the_next_phase_needs(
        kube_cluster: KubeCluster, tmp_path: Path) -> None:
    plan = render_plan(kluctl_env("staging"), seed_apart(tmp_path, "ap"))
    routes = [o for o in plan.phases[-1].objects if o["kind"] == "IngressRoute"]

    early = apply(kube_cluster, routes)  # before the chart's barrier: the kind does not exist yet
    assert early.returncode != 0 and "IngressRoute" in early.stderr, early.stderr

    for phase in plan.phases:
        result = apply(kube_cluster, phase.objects)
        assert result.returncode == 0, result.stderr
        wait_ready(kube_cluster, phase.wait)

    crd = live(kube_cluster, ObjRef("apiextensions.k8s.io/v1", "CustomResourceDefinition", "",
                                    "ingressroutes.traefik.io"))
    assert crd is not None and is_ready(crd) is True
    job = live(kube_cluster, ObjRef("batch/v1", "Job", "shop-staging-ap", "migrate-0-0-0-4-g1a2b3c4"))
    assert job is not None and is_ready(job) is True  # the migrations barrier waited for completion
    route = live(kube_cluster, ObjRef("traefik.io/v1alpha1", "IngressRoute", "shop-staging-ap", "frontend"))
    assert route is not None
    assert route["metadata"]["labels"]["kluctl.io/discriminator"] == "shop-ap-staging"
    assert route["spec"]["routes"][0]["match"] == "Host(`staging.shop.example.com`)"
    edge = live(kube_cluster, ObjRef("apps/v1", "Deployment", "edge-staging-ap", "edge-traefik"))
    assert edge is not None and edge["spec"]["replicas"] == 1
