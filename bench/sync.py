"""Sync: 1,000 objects (ConfigMaps, Deployments with replicas 0, Services), three engines side by side.

Sides, each on one control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok):

- Shipline: ``sync_environment`` through ``shipline_sync`` below (the one adapter to the engine),
  with what a worker keeps per cluster (its live-state cache, or one long-lived API client);
- Flux's apply engine (``github.com/fluxcd/pkg/ssa`` ``ApplyAllStaged``, what kustomize-controller
  runs) in one long-lived Go process (``bench/flux.py``);
- ``kubectl apply --server-side``, one process per apply.

Steps: first apply, no-op re-sync (same revision), one-image change (next revision). Each round
gives every side fresh namespaces; within a step the side that goes first rotates from round to
round; the table shows medians over the rounds. Times are "to applied" (every write done, no
health wait); Shipline's whole sync (its health wait included) is reported too. API requests are
counted by the API server itself (``apiserver_request_total``), and every side's objects are read
back after each step (count and the changed image) so a side that skipped work cannot win.
Deployments have ``replicas: 0``: this measures applying objects, not scheduling pods.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import flux, kubeobs
from bench.common import Section, median, run, say, secs, state_dir

KINDS = ("ConfigMap", "Deployment", "Service")
SIDES = ("shipline", "flux", "kubectl")
STEPS = ("first", "noop", "change")
LABEL = {"shipline": "Shipline", "flux": "Flux ssa", "kubectl": "kubectl"}
CHANGED = 1
"""The object whose image moves to 1.0.1 in revision r2 (``obj-0001``, a Deployment)."""


# ==================================================================================================
# PLUG-IN POINT: how the benchmark calls Shipline's sync engine. When the engine's API changes,
# adjust ``shipline_engine`` and ``shipline_sync`` (and only these); everything else measures from
# the outside.
# ==================================================================================================


def shipline_engine(kubeconfig: Path) -> dict[str, Any]:
    """Keyword arguments for every Shipline sync of the run, made once per cluster as a worker does:
    the worker's per-cluster live-state cache when the engine takes one, else one long-lived client."""
    from handlers.settings import ClusterConfig
    from handlers.sync import kube_client, sync_environment

    cluster = ClusterConfig(kubeconfig=kubeconfig)
    if "cache" in inspect.signature(sync_environment).parameters:
        from service.livestate import cache_for

        return {"cache": cache_for(cluster)}
    return {"api_client": kube_client(cluster)}


def close_engine(engine: dict[str, Any]) -> None:
    """Stop what ``shipline_engine`` started (the cache's watch threads, the client's pool)."""
    for part in engine.values():
        for method in ("stop", "close"):
            if callable(getattr(part, method, None)):
                getattr(part, method)()


@dataclass(frozen=True)
class ShiplineRun:
    total: float
    """The whole ``sync_environment`` call, health wait included."""
    applied: float
    """Seconds until every write was done: the total minus the health wait."""
    written: int
    """Objects the engine created or changed (its own count, for the facts)."""
    unchanged: int


def shipline_sync(env: Any, checkout: Path, revision: str, engine: dict[str, Any]) -> ShiplineRun:
    """One Shipline sync of ``env`` (``checkout`` at ``revision``), timed whole and to applied.

    The engine waits for health in ``handlers.sync.reconcile.wait_healthy``: the bench times that
    call and takes it out of "to applied". If health moves elsewhere, the engine's own
    ``SyncResult.applied_seconds`` is used instead.
    """
    from handlers.sync import sync_environment

    with _health_timer() as health:
        began = time.perf_counter()
        result = sync_environment(env, checkout, revision, **engine)
        total = time.perf_counter() - began
    if result.health.status != "Healthy":
        raise RuntimeError(f"Shipline sync of {env.name} at {revision} ended {result.health}")
    applied = total - sum(health) if health is not None else float(result.applied_seconds)
    return ShiplineRun(total=total, applied=applied, written=len(result.applied), unchanged=result.unchanged)


@contextlib.contextmanager
def _health_timer() -> Iterator[list[float] | None]:
    import handlers.sync.reconcile as reconcile

    original = getattr(reconcile, "wait_healthy", None)
    if original is None:
        yield None
        return
    spent: list[float] = []

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


# ==================================================================================================
# The objects
# ==================================================================================================


def manifest(n: int, image_tag: str = "1.0.0", namespace: str | None = None) -> str:
    kind = KINDS[n % 3]
    name = f"obj-{n:04d}"
    meta = f"metadata:\n  name: {name}\n" + (f"  namespace: {namespace}\n" if namespace else "")
    meta += f"  labels: {{app: {name}}}\n"
    if kind == "ConfigMap":
        return (f"apiVersion: v1\nkind: ConfigMap\n{meta}"
                f"data:\n  key: value-{n}\n  settings.yaml: |\n    level: info\n    index: {n}\n")
    if kind == "Service":
        return (f"apiVersion: v1\nkind: Service\n{meta}"
                f"spec:\n  selector: {{app: {name}}}\n  ports: [{{port: 80, targetPort: 8080}}]\n")
    return (f"apiVersion: apps/v1\nkind: Deployment\n{meta}"
            f"spec:\n  replicas: 0\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n"
            f"    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n"
            f"        - name: app\n          image: {image(n, image_tag)}\n"
            f"          ports: [{{containerPort: 8080}}]\n")


def image(n: int, tag: str) -> str:
    return f"registry.example.com/bench/obj-{n:04d}:{tag}"


def write_manifests(target: Path, count: int, *, changed: int | None = None, namespace: str | None = None) -> Path:
    """``count`` objects in 10 multi-document files; ``changed`` gets image tag 1.0.1."""
    files: dict[int, list[str]] = {}
    for n in range(count):
        files.setdefault(n % 10, []).append(manifest(n, "1.0.1" if n == changed else "1.0.0", namespace))
    target.mkdir(parents=True, exist_ok=True)
    for index, docs in files.items():
        (target / f"part-{index:02d}.yaml").write_text("---\n".join(docs))
    return target


def environment(kubeconfig: Path, namespace: str, path: str = "manifests") -> Any:
    from handlers.settings import EnvironmentConfig

    return EnvironmentConfig.model_validate({
        "name": namespace, "git": {"url": "http://127.0.0.1/unused.git", "branch": "main", "path": path},
        "namespace": namespace, "cluster": {"kubeconfig": str(kubeconfig)}, "prune": True, "health_timeout": 300,
    })


# ==================================================================================================
# The sides
# ==================================================================================================


@dataclass
class Sides:
    kubeconfig: Path
    root: Path
    count: int
    flux: flux.FluxEngine
    shipline: dict[str, Any]
    checkouts: dict[str, Path]

    def run(self, side: str, step: str, rnd: int) -> dict[str, Any]:
        namespace = f"{side}-r{rnd}"
        revision = "r2" if step == "change" else "r1"
        if side == "shipline":
            env = environment(self.kubeconfig, namespace)
            return asdict(shipline_sync(env, self.checkouts[revision], revision, self.shipline))
        objects = self.root / "rendered" / namespace / revision
        if not objects.exists():
            write_manifests(objects, self.count, changed=CHANGED if revision == "r2" else None, namespace=namespace)
        if side == "flux":
            result = self.flux.apply(objects)
            return {"applied": result.read + result.apply, "actions": result.actions}
        began = time.perf_counter()
        run(["kubectl", "--kubeconfig", str(self.kubeconfig), "apply", "--server-side",
             "--field-manager=kubectl-bench", "-f", str(objects)], timeout=900)
        return {"applied": time.perf_counter() - began}


def order(rnd: int, step: int) -> list[str]:
    """Who goes first rotates per round, so for each step every side leads once in 3 rounds."""
    k = (rnd + step) % len(SIDES)
    return [*SIDES[k:], *SIDES[:k]]


def check(api: Any, side: str, rnd: int, count: int, step: str) -> str:
    """Read the side's objects back: all there, and the changed Deployment carries the Git image."""
    namespace = f"{side}-r{rnd}"
    objects = {k: v for k, v in kubeobs.list_objects(api, namespace).items() if k[1].startswith("obj-")}
    if len(objects) != count:
        return f"{namespace}: {len(objects)} of {count} objects after {step}"
    want = image(CHANGED, "1.0.1" if step == "change" else "1.0.0")
    got = kubeobs.deployment_image(objects[("Deployment", f"obj-{CHANGED:04d}")])
    return "" if got == want else f"{namespace}: obj-{CHANGED:04d} runs {got}, Git says {want}"


Measurements = dict[str, dict[str, list[dict[str, Any]]]]
"""side → step → one entry per round."""


def measure(sides: Sides, observer: Any, rounds: int) -> tuple[Measurements, Measurements, list[str]]:
    """Every round and step; (timings, API requests by verb, who went first in each step)."""
    kubeconfig, count = sides.kubeconfig, sides.count
    runs: Measurements = {s: {t: [] for t in STEPS} for s in SIDES}
    requests: Measurements = {s: {t: [] for t in STEPS} for s in SIDES}
    firsts: list[str] = []
    for rnd in range(1, rounds + 1):
        for side in SIDES:
            run(["kubectl", "--kubeconfig", str(kubeconfig), "create", "namespace", f"{side}-r{rnd}"])
        for index, step in enumerate(STEPS):
            who = order(rnd, index)
            firsts.append(who[0])
            line = []
            for side in who:
                before = kubeobs.api_requests(observer)
                runs[side][step].append(sides.run(side, step, rnd))
                requests[side][step].append(kubeobs.delta(kubeobs.api_requests(observer), before))
                line.append(f"{LABEL[side]} {runs[side][step][-1]['applied']:.2f} s")
            problems = [p for side in SIDES if (p := check(observer, side, rnd, count, step))]
            if problems:
                raise RuntimeError(f"round {rnd}, {step}: " + "; ".join(problems))
            say(f"round {rnd}/{rounds} {step}: " + ", ".join(line))
    return runs, requests, firsts


def bench(quick: bool = False) -> Section:
    from devstack.kube import KubeCluster

    count, rounds = (300, 3) if quick else (1000, 3)
    section = Section("sync", "Sync")
    binary = flux.build()
    load = os.getloadavg()[0]
    with state_dir("sync") as root:
        say("starting the control plane")
        began = time.perf_counter()
        cluster = KubeCluster.start(root / "kube")
        say(f"control plane ready in {time.perf_counter() - began:.1f} s")
        try:
            kubeconfig = cluster.kubeconfig
            observer = kubeobs.client(kubeconfig)
            checkouts = {"r1": root / "checkout-r1", "r2": root / "checkout-r2"}
            write_manifests(checkouts["r1"] / "manifests", count)
            write_manifests(checkouts["r2"] / "manifests", count, changed=CHANGED)
            with flux.FluxEngine(binary, kubeconfig, log=root / "fluxssa.log") as engine:
                sides = Sides(kubeconfig, root, count, engine, shipline_engine(kubeconfig), checkouts)
                try:
                    runs, requests, firsts = measure(sides, observer, rounds)
                finally:
                    close_engine(sides.shipline)
        finally:
            cluster.stop()
    section.data = {
        "count": count, "rounds": rounds, "runs": runs, "requests": requests, "firsts": firsts,
        "shipline": " and ".join(f"`{k}`" for k in sides.shipline), "load": [load, os.getloadavg()[0]],
        "flux": {"module": flux.MODULE, "version": flux.module_version(), "concurrency": engine.concurrency,
                 "qps": engine.qps, "field_manager": flux.FIELD_MANAGER},
        "kubectl": json.loads(run(["kubectl", "version", "--client", "-o", "json"]).stdout)["clientVersion"][
            "gitVersion"],
    }
    report(section)
    return section


# ==================================================================================================
# The report: every number below comes from ``section.data``
# ==================================================================================================


def medians(data: dict[str, Any], side: str, step: str, key: str = "applied") -> float:
    return median([r[key] for r in data["runs"][side][step]])


def median_requests(data: dict[str, Any], side: str, step: str) -> dict[str, float]:
    rounds = data["requests"][side][step]
    verbs = sorted({v for r in rounds for v in r})
    return {v: median([r.get(v, 0) for r in rounds]) for v in verbs}


TARGETS: dict[str, tuple[str, float | None]] = {
    # step: (target text, absolute bound in seconds or None when the bound is 1.0× Flux's engine)
    "first": ("≤ 1.0× Flux ssa", None),
    "noop": ("≤ 0.3 s whole sync", 0.3),
    "change": ("≤ 0.5 s to applied", 0.5),
}
METRIC = {
    "first": "first apply of {n} objects, to applied",
    "noop": "no-op re-sync (same revision), whole sync",
    "change": "one-image change (next revision), to applied",
}


def shipline_value(data: dict[str, Any], step: str) -> float:
    return medians(data, "shipline", step, "total" if step == "noop" else "applied")


def met(data: dict[str, Any], step: str) -> bool:
    bound = TARGETS[step][1]
    value = shipline_value(data, step)
    return value <= bound if bound is not None else value <= medians(data, "flux", step)


def dur(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else secs(seconds)


def times(a: float, b: float) -> str:
    return f"{a / b:.3f}×" if a / b < 0.1 else f"{a / b:.2f}×"


def report(section: Section) -> None:
    data = section.data
    n, rounds = data["count"], data["rounds"]
    for step in STEPS:
        ship = shipline_value(data, step)
        fx, kc = medians(data, "flux", step), medians(data, "kubectl", step)
        metric = METRIC[step].format(n=n) + f", median of {rounds}"
        section.row(metric, dur(ship), baseline=f"{dur(fx)} Flux ssa", ratio=times(ship, fx),
                    target=TARGETS[step][0], met=met(data, step))
        section.row("same, vs `kubectl apply --server-side`", dur(ship), baseline=f"{dur(kc)} kubectl",
                    ratio=times(ship, kc))
    fluxinfo = data["flux"]
    qps = "client-side rate limit off" if fluxinfo["qps"] is None else f"client QPS {fluxinfo['qps']:g}"
    section.facts += [
        f"{n} objects (ConfigMaps, Deployments with replicas 0, Services) in 10 multi-document files; {rounds} "
        "rounds, each side into fresh namespaces of one control plane (etcd, kube-apiserver, controller-manager, "
        "scheduler, kwok); per step the side that goes first rotates (first in order: "
        + ", ".join(f"{LABEL[s]} {data['firsts'].count(s)}×" for s in SIDES) + "). After every step each side's "
        f"objects were read back: {n} present, the changed Deployment on Git's image."
        + (" 1-minute load average {:.1f} at the start, {:.1f} at the end (2 cores, shared).".format(*data["load"])
           if "load" in data else ""),
        f"Shipline: `sync_environment` in the bench process with {data['shipline']} made once for the run (what "
        "a worker keeps per cluster); to applied = the call minus its health wait.",
        f"Flux: `{fluxinfo['module']}` {fluxinfo['version']} `ApplyAllStaged` (GET + server-side dry-run per object "
        f"on {fluxinfo['concurrency']} goroutines, kustomize-controller's `--concurrent-ssa` default, then an apply "
        f"of what drifted) in one long-lived process, field manager `{fluxinfo['field_manager']}`, {qps}; time = "
        "reading the YAML + ApplyAllStaged. kubectl " + data["kubectl"] + ": `apply --server-side` of a directory, "
        "one process per apply, its whole run timed.",
    ]
    for step in STEPS:
        ship = data["runs"]["shipline"][step]
        section.facts.append(
            f"{step}: to applied, per round — " + "; ".join(
                f"{LABEL[s]} " + ", ".join(f"{r['applied']:.3f}" for r in data["runs"][s][step]) + " s"
                for s in SIDES)
            + "; Shipline whole sync " + ", ".join(f"{r['total']:.3f}" for r in ship) + " s, wrote "
            + ", ".join(str(r["written"]) for r in ship) + " objects. API requests on ConfigMaps/Deployments/"
            "Services/Namespaces (median, counted by the API server): " + "; ".join(
                f"{LABEL[s]} {kubeobs.summary(median_requests(data, s, step))}" for s in SIDES) + ".")
