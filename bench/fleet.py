"""A Shipline under test for the drift and scale benchmarks, run the way it is deployed.

Redis and the git server from the project's devstack, a control plane (``KubeCluster``), one
manifests repo with a directory per environment, a generated ``shipline.yaml``, and Shipline's
own long-running processes started by ``start_shipline`` (the plug-in point below). Everything
the benchmarks measure is read from the outside: the cluster (the bench's own client), the
processes' CPU and memory (/proc), the worker's ``/metrics``.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import kubeobs
from bench.common import PYTHON, Proc, git, say, started
from bench.sync import image, manifest

# ==================================================================================================
# PLUG-IN POINT: the Shipline processes that keep environments in sync and correct drift.
# Today: one `shipline worker` (its Reconciler re-syncs every environment each reconcile_interval).
# If the watch-driven drift handler runs in its own process (e.g. `shipline watcher`), start it
# here too; the benchmarks only need every returned process's tree to be Shipline's whole cost.
# ==================================================================================================


def start_shipline(config: Path, logs: Path) -> list[Proc]:
    env = {"SHIPLINE_CONFIG": str(config), "PYTHONUNBUFFERED": "1"}
    worker = Proc([PYTHON, "-m", "service.cli", "worker", "--config", str(config), "--processes", "1",
                   "--threads", "4", "--log-format", "json"], log=logs / "worker.log", env=env)
    return [worker]


# ==================================================================================================


@dataclass(frozen=True)
class FleetEnv:
    """One environment: its name is also its namespace; its manifests are ``envs/<name>/``."""

    name: str
    count: int

    @property
    def path(self) -> str:
        return f"envs/{self.name}"


def manifests(envs: list[FleetEnv]) -> dict[str, str]:
    """Each environment's objects (the sync benchmark's generator) in 10 multi-document files."""
    files: dict[str, str] = {}
    for env in envs:
        parts: dict[int, list[str]] = {}
        for n in range(env.count):
            parts.setdefault(n % 10, []).append(manifest(n))
        for index, docs in parts.items():
            files[f"{env.path}/part-{index:02d}.yaml"] = "---\n".join(docs)
    return files


def git_spec(n: int) -> tuple[int, str]:
    """What Git says for Deployment ``obj-<n>``: (replicas, image)."""
    return 0, image(n, "1.0.0")


def deployment_spec(obj: dict[str, Any]) -> tuple[int, str]:
    return int(obj["spec"].get("replicas") or 0), kubeobs.deployment_image(obj)


def push_tree(url: str, files: dict[str, str], work: Path) -> str:
    git(work.parent, "clone", "-q", url, str(work))
    for rel, text in files.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text(text)
    git(work, "add", "-A")
    git(work, "commit", "-qm", f"{len(files)} manifest files")
    git(work, "push", "-q", "origin", "HEAD:main")
    return git(work, "rev-parse", "HEAD").strip()


def namespaces_yaml(names: list[str]) -> str:
    return "---\n".join(f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n" for name in names)


def shipline_config(path: Path, *, state: Path, redis_url: str, repo_url: str, kubeconfig: Path,
                    envs: list[FleetEnv], reconcile_interval: int, metrics_port: int) -> Path:
    config = {
        "state_dir": str(state),
        "server": {"host": "127.0.0.1", "worker_metrics_port": metrics_port},
        "redis": {"url": redis_url},
        "environments": [{
            "name": env.name, "git": {"url": repo_url, "branch": "main", "path": env.path},
            "namespace": env.name, "cluster": {"kubeconfig": str(kubeconfig)}, "prune": True, "drift": "correct",
            "reconcile_interval": reconcile_interval, "health_timeout": 120,
        } for env in envs],
    }
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


@dataclass
class Fleet:
    root: Path
    kubeconfig: Path
    config: Path
    metrics_port: int
    envs: list[FleetEnv]
    api: Any
    """The bench's own ApiClient."""
    cluster: Any

    def pending(self, envs: list[FleetEnv]) -> list[FleetEnv]:
        """Environments whose objects are not all in the cluster yet, or whose Deployments differ from Git."""
        left = []
        for env in envs:
            objects = {k: v for k, v in kubeobs.list_objects(self.api, env.name).items() if k[1].startswith("obj-")}
            ok = len(objects) == env.count and all(
                deployment_spec(obj) == git_spec(int(name[4:])) for (kind, name), obj in objects.items()
                if kind == "Deployment")
            if not ok:
                left.append(env)
        return left

    def wait_synced(self, *, timeout: float, procs: list[Proc]) -> float:
        """Seconds until every environment is in the cluster as Git says; fails with the worker's log."""
        began = time.monotonic()
        left = list(self.envs)
        while left:
            left = self.pending(left)
            for proc in procs:
                if proc.popen.poll() is not None:
                    raise RuntimeError(f"{proc.argv[2:4]} exited {proc.popen.returncode}:\n{_tail(proc.log)}")
            if not left:
                break
            if time.monotonic() - began > timeout:
                raise TimeoutError(f"{len(left)} of {len(self.envs)} environments not synced within {timeout:.0f} s "
                                   f"(first: {left[0].name}); worker log:\n{_tail(procs[0].log)}")
            time.sleep(2)
        return time.monotonic() - began

    def metrics(self) -> str:
        import httpx

        return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10).text


def metric_sum(text: str, name: str, **labels: str) -> float | None:
    """The sum of ``name``'s samples whose labels include ``labels``; None when there is none."""
    from prometheus_client.parser import text_string_to_metric_families

    total, seen = 0.0, False
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total, seen = total + s.value, True
    return total if seen else None


def metric_by(text: str, name: str, label: str, **labels: str) -> dict[str, float]:
    """``name``'s samples matching ``labels``, summed per value of ``label``."""
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                found[s.labels.get(label, "")] = found.get(s.labels.get(label, ""), 0.0) + s.value
    return found


def _tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else "(no log)"


@contextlib.contextmanager
def fleet(name: str, root: Path, envs: list[FleetEnv], *, reconcile_interval: int) -> Iterator[Fleet]:
    """The stack, the repo pushed, namespaces created, the config written; Shipline not started yet."""
    from devstack.gitrepos import GitServer
    from devstack.kube import KubeCluster
    from devstack.process import free_port
    from devstack.redis import RedisServer

    stack = root / "stack"
    redis, gitserver = RedisServer(stack, free_port()), GitServer(stack, free_port())
    with started(redis, gitserver):
        say("starting the control plane")
        cluster = KubeCluster.start(stack / "kube")
        try:
            url = gitserver.create_repo(f"{name}-deploy")
            files = manifests(envs)
            say(f"pushing {len(files)} manifest files ({sum(e.count for e in envs)} objects, {len(envs)} environments)")
            push_tree(url, files, root / "seed")
            ns = root / "namespaces.yaml"
            ns.write_text(namespaces_yaml([e.name for e in envs]))
            from bench.common import run

            run(["kubectl", "--kubeconfig", str(cluster.kubeconfig), "apply", "--server-side", "-f", str(ns)])
            port = free_port()
            config = shipline_config(root / "shipline.yaml", state=root / "shipline", redis_url=redis.url,
                                     repo_url=url, kubeconfig=cluster.kubeconfig, envs=envs,
                                     reconcile_interval=reconcile_interval, metrics_port=port)
            yield Fleet(root, cluster.kubeconfig, config, port, envs, kubeobs.client(cluster.kubeconfig), cluster)
        finally:
            cluster.stop()


@contextlib.contextmanager
def shipline_running(f: Fleet) -> Iterator[list[Proc]]:
    procs = start_shipline(f.config, f.root / "logs")
    try:
        yield procs
    finally:
        for proc in reversed(procs):
            proc.stop()
