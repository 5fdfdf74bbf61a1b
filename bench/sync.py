"""Sync: a target of 1,000 objects (ConfigMaps, Deployments, Services) in the local cluster.

``sync_environment``: first apply, a no-op re-sync (same revision), a one-image change (next
revision), each timed whole and without its health wait (timed by wrapping ``wait_healthy``).
Baseline: ``kubectl apply --server-side`` of the same rendered YAML into a fresh namespace, for
the same three steps. Deployments have ``replicas: 0``: this measures applying objects, not
scheduling pods (lead time measures a real rollout).
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import Section, run, say, secs, state_dir

KINDS = ("ConfigMap", "Deployment", "Service")


def manifest(n: int, image_tag: str = "1.0.0") -> str:
    kind = KINDS[n % 3]
    name = f"obj-{n:04d}"
    if kind == "ConfigMap":
        return (f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels: {{app: {name}}}\n"
                f"data:\n  key: value-{n}\n  settings.yaml: |\n    level: info\n    index: {n}\n")
    if kind == "Service":
        return (f"apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  labels: {{app: {name}}}\n"
                f"spec:\n  selector: {{app: {name}}}\n  ports: [{{port: 80, targetPort: 8080}}]\n")
    return (f"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  labels: {{app: {name}}}\n"
            f"spec:\n  replicas: 0\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n"
            f"    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n"
            f"        - name: app\n          image: registry.example.com/bench/{name}:{image_tag}\n"
            f"          ports: [{{containerPort: 8080}}]\n")


def write_checkout(checkout: Path, count: int, changed: int | None = None) -> None:
    """``count`` objects in 10 multi-document files; ``changed`` gets image tag 1.0.1."""
    files: dict[int, list[str]] = {}
    for n in range(count):
        files.setdefault(n % 10, []).append(manifest(n, "1.0.1" if n == changed else "1.0.0"))
    target = checkout / "manifests"
    target.mkdir(parents=True, exist_ok=True)
    for index, docs in files.items():
        (target / f"part-{index:02d}.yaml").write_text("---\n".join(docs))


def environment(kubeconfig: Path, namespace: str) -> Any:
    from handlers.settings import EnvironmentConfig

    return EnvironmentConfig.model_validate({
        "name": "bench", "git": {"url": "http://127.0.0.1/unused.git", "branch": "main", "path": "manifests"},
        "namespace": namespace, "cluster": {"kubeconfig": str(kubeconfig)}, "prune": True, "health_timeout": 300,
    })


@contextlib.contextmanager
def health_timer() -> Iterator[list[float]]:
    import handlers.sync.reconcile as reconcile

    spent: list[float] = []
    original = reconcile.wait_healthy

    @functools.wraps(original)
    def timed(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - began)

    reconcile.wait_healthy = timed
    try:
        yield spent
    finally:
        reconcile.wait_healthy = original


def shipline_sync(env: Any, checkout: Path, revision: str) -> dict[str, Any]:
    from handlers.sync.reconcile import sync_environment

    with health_timer() as health:
        began = time.perf_counter()
        result = sync_environment(env, checkout, revision)
        total = time.perf_counter() - began
    if result.health.status != "Healthy":
        raise RuntimeError(f"sync at {revision} ended {result.health}")
    return {"total": total, "health": sum(health), "applied": len(result.applied), "unchanged": result.unchanged}


def rendered_yaml(env: Any, checkout: Path, path: Path) -> int:
    """The same objects Shipline renders, as one multi-document file for kubectl."""
    import yaml

    from handlers.sync.render import render

    objects = render(env, checkout)
    for obj in objects:
        obj["metadata"]["namespace"] = env.namespace
    path.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    return len(objects)


def kubectl_apply(kubeconfig: Path, path: Path) -> float:
    began = time.perf_counter()
    run(["kubectl", "--kubeconfig", str(kubeconfig), "apply", "--server-side", "--field-manager=bench",
         "-f", str(path)], timeout=900)
    return time.perf_counter() - began


def create_namespace(kubeconfig: Path, name: str) -> None:
    run(["kubectl", "--kubeconfig", str(kubeconfig), "create", "namespace", name])


def bench(quick: bool = False) -> Section:
    from devstack.kube import KubeCluster

    count = 300 if quick else 1000
    section = Section("sync", "Sync")
    with state_dir("sync") as root:
        say("starting the control plane")
        began = time.perf_counter()
        cluster = KubeCluster.start(root / "kube")
        say(f"control plane ready in {time.perf_counter() - began:.1f} s")
        try:
            kubeconfig = cluster.kubeconfig
            checkout = root / "checkout"
            write_checkout(checkout, count)
            kube_env, ship_env = environment(kubeconfig, "bench-kubectl"), environment(kubeconfig, "bench-shipline")
            for env in (kube_env, ship_env):
                create_namespace(kubeconfig, env.namespace)
            first_yaml, changed_yaml = root / "first.yaml", root / "changed.yaml"
            rendered = rendered_yaml(kube_env, checkout, first_yaml)
            k: dict[str, float] = {}
            s: dict[str, dict[str, Any]] = {}
            say(f"kubectl apply --server-side of {rendered} objects")
            k["first"] = kubectl_apply(kubeconfig, first_yaml)
            say(f"kubectl first apply {k['first']:.2f} s; Shipline first sync")
            s["first"] = shipline_sync(ship_env, checkout, "r1")
            say(f"Shipline first sync {s['first']['total']:.2f} s (health wait {s['first']['health']:.2f} s)")
            k["noop"] = kubectl_apply(kubeconfig, first_yaml)
            s["noop"] = shipline_sync(ship_env, checkout, "r1")
            say(f"no-op: kubectl {k['noop']:.2f} s, Shipline {s['noop']['total']:.2f} s")
            write_checkout(checkout, count, changed=1)
            rendered_yaml(kube_env, checkout, changed_yaml)
            k["change"] = kubectl_apply(kubeconfig, changed_yaml)
            s["change"] = shipline_sync(ship_env, checkout, "r2")
            say(f"one image: kubectl {k['change']:.2f} s, Shipline {s['change']['total']:.2f} s")
        finally:
            cluster.stop()
    _report(section, s, k, rendered)
    return section


def _report(section: Section, s: dict[str, dict[str, Any]], k: dict[str, float], rendered: int) -> None:
    first = s["first"]["total"] - s["first"]["health"]
    section.row(f"first apply of {rendered} objects (health wait excluded)", secs(first),
                baseline=f"{secs(k['first'])} kubectl", ratio=f"{first / k['first']:.2f}×",
                target="≤ 1.0× kubectl", met=first <= k["first"])
    section.row("no-op re-sync (same revision), whole sync", secs(s["noop"]["total"]),
                baseline=f"{secs(k['noop'])} kubectl re-apply", ratio=f"{s['noop']['total'] / k['noop']:.2f}×",
                target="≤ 1 s", met=s["noop"]["total"] <= 1.0)
    change = s["change"]["total"]
    section.row("one-image change (next revision), whole sync", secs(change),
                baseline=f"{secs(k['change'])} kubectl", ratio=f"{change / k['change']:.2f}×")
    section.facts += [
        f"{rendered} objects (ConfigMaps, Deployments with replicas 0, Services) in 10 multi-document files, "
        "rendered by Shipline (`plain`) and written once more as one file for kubectl; each side into its own "
        "fresh namespace of one control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok).",
        "Shipline: " + "; ".join(
            f"{name}: {v['total']:.2f} s total, health wait {v['health']:.2f} s, applied {v['applied']}, "
            f"unchanged {v['unchanged']}" for name, v in s.items()) + ".",
        f"kubectl apply --server-side: first {k['first']:.2f} s, re-apply {k['noop']:.2f} s, "
        f"one image {k['change']:.2f} s.",
    ]
