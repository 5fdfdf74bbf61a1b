"""Scale: 100 environments × 100 objects on one cluster, ``reconcile_interval`` 60 s — what a running
Shipline costs while nothing changes, and how much memory it holds per object managed.

Shipline (``fleet.start_shipline``: today one ``shipline worker``) syncs every environment from
one manifests repo on the local git server; once all of them are in the cluster as Git says and
each has finished its first sync, a window of steady state is measured from the outside: CPU
time of Shipline's process trees (/proc: user + system, reaped children such as ``git fetch``
included), the API server's own request counters and CPU, and the syncs the worker reports on
its ``/metrics``. Baseline, same cluster, after Shipline is stopped: Flux's apply engine
(``bench/flux.py``) on the same environments in its own namespaces, one no-op ``ApplyAllStaged``
pass per environment — what kustomize-controller does once per interval.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

from bench import flux, kubeobs, procstat
from bench.common import Section, say, state_dir
from bench.fleet import (
    Fleet,
    FleetEnv,
    fleet,
    metric_by,
    metric_sum,
    namespaces_yaml,
    shipline_config,
    shipline_running,
)
from bench.sync import write_manifests

INTERVAL = 60
TARGET_PERCENT = 5.0
SYNCS = "shipline_stage_duration_seconds_count"
"""The worker's histogram of stage runs; its ``stage="sync"`` count tells how many syncs ran."""

# ==================================================================================================
# PLUG-IN POINT: the engine's own account of its live-state cache, read from the worker's /metrics.
# Return bytes, or None while the engine exports no such gauge (the report then says so and shows
# only the worker's whole RSS). Rename CACHE_METRIC to whatever the engine exports.
# ==================================================================================================
CACHE_METRIC = "shipline_cache_bytes"


def cache_bytes(metrics_text: str) -> float | None:
    return metric_sum(metrics_text, CACHE_METRIC)


# ==================================================================================================


def bench(quick: bool = False) -> Section:
    n_envs, per_env, window = (20, 50, 60.0) if quick else (100, 100, 120.0)
    envs = [FleetEnv(f"fleet-{i:03d}", per_env) for i in range(n_envs)]
    section = Section("scale", "Scale")
    data: dict[str, Any] = {"envs": n_envs, "per_env": per_env, "interval": INTERVAL, "window": window}
    with state_dir("scale") as root, fleet("scale", root, envs, reconcile_interval=INTERVAL) as f:
        apiserver = int(f.cluster.status()["components"]["kube-apiserver"])
        data["floor"] = idle_floor(f, window / 2, apiserver)
        say(f"Shipline with no environments: {data['floor']['cpu_percent']:.1f} % of a core")
        with shipline_running(f) as procs:
            began = time.monotonic()
            data["synced_after"] = f.wait_synced(timeout=3600, procs=procs)
            say(f"all {n_envs} environments in the cluster {data['synced_after']:.0f} s after start")
            data["first_syncs"] = settle(f, n_envs, timeout=600, log=procs[0].log)
            data["settled_after"] = time.monotonic() - began
            data["shipline"] = measure_window(f, [p.popen.pid for p in procs], apiserver, window, procs)
            data["shipline"]["cache_bytes"] = cache_bytes(f.metrics())
            say(f"Shipline: {data['shipline']['cpu_percent']:.1f} % of a core, "
                f"{data['shipline']['syncs']} syncs in {window:.0f} s")
        data["flux"] = flux_baseline(f, root, envs, apiserver)
        say(f"Flux ssa: one no-op pass over {n_envs} environments: {data['flux']['cpu_seconds']:.1f} s CPU")
    section.data = data
    report(section)
    return section


def idle_floor(f: Fleet, window: float, apiserver: int) -> dict[str, Any]:
    """The same Shipline processes with no environment configured: the cost of merely running."""
    from devstack.process import free_port

    empty = dataclasses.replace(f, config=f.root / "shipline-empty.yaml", envs=[], metrics_port=free_port())
    shipline_config(empty.config, state=f.root / "shipline-empty", redis_url=redis_url(f.config),
                    repo_url="http://127.0.0.1/unused.git", kubeconfig=f.kubeconfig, envs=[],
                    reconcile_interval=INTERVAL, metrics_port=empty.metrics_port)
    with shipline_running(empty) as procs:
        time.sleep(5)  # imports and the fork done before the window opens
        return measure_window(empty, [p.popen.pid for p in procs], apiserver, window, procs)


def redis_url(config: Any) -> str:
    return str(json.loads(config.read_text())["redis"]["url"])


def sync_outcomes(f: Fleet) -> dict[str, float]:
    """Finished syncs the worker reports on /metrics, by outcome (Healthy, Degraded, error, ...)."""
    return metric_by(f.metrics(), SYNCS, "outcome", stage="sync")


def settle(f: Fleet, n_envs: int, *, timeout: float, log: Any) -> float:
    """Wait until the worker reports a finished sync per environment (its first ones, health waits
    included); without that count on /metrics the window would measure nothing known: fail."""
    deadline = time.monotonic() + timeout
    while True:
        done = sum(sync_outcomes(f).values())
        if done >= n_envs:
            return done
        if time.monotonic() > deadline:
            raise TimeoutError(f"the worker reported {done:g} of {n_envs} first syncs on /metrics ({SYNCS}"
                               f'{{stage="sync"}}) within {timeout:.0f} s; see {log}')
        time.sleep(1)


def measure_window(f: Fleet, roots: list[int], apiserver: int, window: float, procs: list[Any]) -> dict[str, Any]:
    before, api_cpu0 = procstat.sample(*roots), procstat.sample(apiserver).cpu_seconds
    requests0, syncs0 = kubeobs.api_requests(f.api), sync_outcomes(f)
    began = time.monotonic()
    while (left := window - (time.monotonic() - began)) > 0:
        time.sleep(min(5.0, left))
        for proc in procs:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.argv[2:4]} exited during the window; see {proc.log}")
    wall = time.monotonic() - began
    after, api_cpu1 = procstat.sample(*roots), procstat.sample(apiserver).cpu_seconds
    requests, syncs1 = kubeobs.delta(kubeobs.api_requests(f.api), requests0), sync_outcomes(f)
    outcomes = {k: n for k, v in syncs1.items() if (n := v - syncs0.get(k, 0))}
    failed = {k: n for k, n in outcomes.items() if k != "Healthy"}
    if failed:
        raise RuntimeError(f"syncs that did not end Healthy during the window: {failed}; see {procs[0].log}")
    cpu = after.cpu_seconds - before.cpu_seconds
    return {"wall": wall, "cpu_seconds": cpu, "cpu_percent": 100 * cpu / wall, "rss_bytes": after.rss_bytes,
            "processes": after.processes, "apiserver_cpu_seconds": api_cpu1 - api_cpu0, "requests": requests,
            "syncs": sum(outcomes.values())}


def flux_baseline(f: Fleet, root: Any, envs: list[FleetEnv], apiserver: int) -> dict[str, Any]:
    """Flux's engine on the same environments (own namespaces): a first apply, then one no-op pass
    over every environment — its CPU is Flux's per-interval cost for the fleet."""
    from bench.common import run

    dirs = []
    for env in envs:
        dirs.append(write_manifests(root / "flux" / env.name, env.count, namespace=f"flux-{env.name}"))
    ns = root / "flux-namespaces.yaml"
    ns.write_text(namespaces_yaml([f"flux-{env.name}" for env in envs]))
    run(["kubectl", "--kubeconfig", str(f.kubeconfig), "apply", "--server-side", "-f", str(ns)])
    with flux.FluxEngine(flux.build(), f.kubeconfig, log=root / "logs" / "fluxssa.log") as engine:
        began = time.monotonic()
        for path in dirs:
            engine.apply(path)
        first = time.monotonic() - began
        before, api0 = procstat.sample(engine.pid), procstat.sample(apiserver).cpu_seconds
        requests0 = kubeobs.api_requests(f.api)
        began = time.monotonic()
        unchanged = 0
        for path in dirs:
            unchanged += engine.apply(path).actions.get("unchanged", 0)
        wall = time.monotonic() - began
        after, api1 = procstat.sample(engine.pid), procstat.sample(apiserver).cpu_seconds
        requests = kubeobs.delta(kubeobs.api_requests(f.api), requests0)
        return {"first_apply": first, "pass_wall": wall, "cpu_seconds": after.cpu_seconds - before.cpu_seconds,
                "rss_bytes": after.rss_bytes, "apiserver_cpu_seconds": api1 - api0, "requests": requests,
                "unchanged": unchanged, "concurrency": engine.concurrency, "qps": engine.qps}


MB = 1024 * 1024


def report(section: Section) -> None:
    d = section.data
    objects = d["envs"] * d["per_env"]
    ship, fx = d["shipline"], d["flux"]
    # Flux runs one pass per environment per interval: its CPU per minute is one pass's CPU × 60 / interval.
    flux_percent = 100 * fx["cpu_seconds"] / d["interval"]
    section.row(f"worker CPU while nothing changes, {d['envs']} environments × {d['per_env']} objects, "
                f"reconcile every {d['interval']} s (% of one core)", f"{ship['cpu_percent']:.1f} %",
                baseline=f"{flux_percent:.1f} % Flux ssa", ratio=f"{ship['cpu_percent'] / flux_percent:.2f}×"
                if flux_percent else "–", target=f"< {TARGET_PERCENT:g} %", met=ship["cpu_percent"] < TARGET_PERCENT)
    per10k = 10_000 / objects
    section.row(f"memory with {objects} objects managed: whole RSS of the processes",
                f"{ship['rss_bytes'] / MB:.0f} MB", baseline=f"{fx['rss_bytes'] / MB:.0f} MB Flux ssa",
                ratio=f"{ship['rss_bytes'] / fx['rss_bytes']:.2f}×")
    cache = ship.get("cache_bytes")
    section.row("live-state cache per 10k objects (the engine's own gauge)",
                f"{cache * per10k / MB:.1f} MB" if cache is not None else f"not exported (`{CACHE_METRIC}`)")
    syncs = ship.get("syncs")
    expected = d["envs"] * ship["wall"] / d["interval"]
    section.facts += [
        f"{d['envs']} environments × {d['per_env']} objects (the sync benchmark's ConfigMaps, Deployments with "
        f"replicas 0, Services), one manifests repo on the local git server, one namespace each; "
        f"`reconcile_interval` {d['interval']} s. All in the cluster {d['synced_after']:.0f} s after Shipline "
        f"started; the window began {d['settled_after']:.0f} s after start, once the worker had reported "
        f"{d['first_syncs']:g} finished syncs.",
        f"The same processes with no environment configured: {d['floor']['cpu_percent']:.1f} % of a core over "
        f"{d['floor']['wall']:.0f} s, RSS {d['floor']['rss_bytes'] / MB:.0f} MB — the cost of merely running.",
        f"Shipline window: {ship['wall']:.0f} s, {ship['cpu_seconds']:.1f} s CPU over {ship['processes']} "
        f"processes (/proc, reaped children included), RSS {ship['rss_bytes'] / MB:.0f} MB; {syncs:g} syncs "
        f"finished in the window, all Healthy (a reconcile per environment per interval would be {expected:.0f})"
        + f"; API requests {kubeobs.summary(ship['requests'])}; kube-apiserver CPU "
        f"{100 * ship['apiserver_cpu_seconds'] / ship['wall']:.1f} % of a core over the window.",
        f"Flux ssa (concurrency {fx['concurrency']}, "
        + ("client-side rate limit off" if fx["qps"] is None else f"QPS {fx['qps']:g}")
        + f"): first apply of the {objects} objects {fx['first_apply']:.1f} s; one no-op pass over every "
        f"environment {fx['pass_wall']:.1f} s wall, {fx['cpu_seconds']:.1f} s CPU ({fx['unchanged']} objects "
        f"unchanged), API requests {kubeobs.summary(fx['requests'])}, kube-apiserver CPU "
        f"{fx['apiserver_cpu_seconds']:.1f} s for the pass ({100 * fx['apiserver_cpu_seconds'] / d['interval']:.1f} % "
        f"of a core at one pass per interval); RSS {fx['rss_bytes'] / MB:.0f} MB.",
    ]
