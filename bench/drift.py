"""Drift: ``kubectl scale`` / ``kubectl set image`` on a Deployment Shipline manages → its live spec
back to Git's, measured from the outside.

One environment (the sync benchmark's objects) kept by a running Shipline (``fleet.start_shipline``)
with ``reconcile_interval`` far above the edits' time span, so a correction inside the per-edit
limit comes from drift seen as it happens, not from the periodic re-sync. Each edit touches a
different Deployment (a flap guard must not see one object corrected again and again). A watch
on the Deployment, opened at its current resourceVersion before kubectl runs, timestamps the
edit as the API server reports it and the first later state equal to Git's (replicas and image):
the difference is the time to correct. kubectl's own start-up is not in it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from urllib3.exceptions import ProtocolError

from bench import kubeobs
from bench.common import Section, median, percentile, run, say, state_dir
from bench.fleet import Fleet, FleetEnv, deployment_spec, fleet, git_spec, shipline_running

RECONCILE_INTERVAL = 300
LIMIT = 20.0
"""Seconds an edit may stay uncorrected (10× the target) before it counts as missed."""
GIVE_UP_AFTER = 2
"""Missed edits in a row after which the remaining edits are not run (bounded run time)."""
TARGET = 2.0


@dataclass(frozen=True)
class Edit:
    kind: str
    name: str
    at: float
    """Seconds since Shipline started."""
    corrected: float | None
    """Seconds from the edit seen by the watch to Git's spec seen again; None: not within LIMIT."""
    after_kubectl: float | None
    """The same, counted from kubectl's return."""
    manager: str
    """The field manager whose managedFields entry is newest once corrected (who put it back)."""


def edit_argv(kind: str, name: str, kubeconfig: str, namespace: str) -> list[str]:
    base = ["kubectl", "--kubeconfig", kubeconfig, "-n", namespace]
    if kind == "scale":
        return [*base, "scale", f"deployment/{name}", "--replicas=2"]
    return [*base, "set", "image", f"deployment/{name}", f"app=registry.example.com/bench/{name}:drifted"]


def one_edit(f: Fleet, env: FleetEnv, n: int, kind: str, started: float) -> Edit:
    from kubernetes import client, watch

    apps = client.AppsV1Api(f.api)
    name = f"obj-{n:04d}"
    want = git_spec(n)
    current = f.api.sanitize_for_serialization(apps.read_namespaced_deployment(name, env.name))
    if deployment_spec(current) != want:
        raise RuntimeError(f"{env.name}/{name} differs from Git before the edit: {deployment_spec(current)}")
    events: list[tuple[float, tuple[int, str], dict[str, Any]]] = []
    stream = watch.Watch()

    def follow() -> None:
        with contextlib.suppress(ProtocolError):  # the watch's end (timeout or stop) may cut the stream
            _follow()

    def _follow() -> None:
        edited = False
        for event in stream.stream(apps.list_namespaced_deployment, env.name, field_selector=f"metadata.name={name}",
                                   resource_version=current["metadata"]["resourceVersion"],
                                   timeout_seconds=int(LIMIT) + 10, _request_timeout=LIMIT + 20):
            obj = event["raw_object"]
            spec = deployment_spec(obj)
            events.append((time.monotonic(), spec, obj))
            edited = edited or spec != want
            if edited and spec == want:
                stream.stop()
                return

    watcher = threading.Thread(target=follow, name=f"watch-{name}", daemon=True)
    watcher.start()
    time.sleep(0.2)  # the watch resumes from the resourceVersion anyway; this only keeps timestamps prompt
    at = time.monotonic() - started
    run(edit_argv(kind, name, str(f.kubeconfig), env.name))
    returned = time.monotonic()
    watcher.join(LIMIT + 5)
    stream.stop()
    seen = next((t for t, spec, _ in events if spec != want), None)
    fixed = next(((t, obj) for t, spec, obj in events if seen is not None and t >= seen and spec == want), None)
    if seen is None:
        raise RuntimeError(f"the watch on {env.name}/{name} never saw the {kind} edit")
    if fixed is None or fixed[0] - seen > LIMIT:
        return Edit(kind, name, at, None, None, "")
    return Edit(kind, name, at, fixed[0] - seen, fixed[0] - returned, newest_manager(fixed[1]))


def drifted(f: Fleet, env: FleetEnv) -> list[str]:
    """Deployments of ``env`` whose live spec differs from Git's."""
    return [name for (kind, name), obj in kubeobs.list_objects(f.api, env.name).items()
            if kind == "Deployment" and name.startswith("obj-") and deployment_spec(obj) != git_spec(int(name[4:]))]


def newest_manager(obj: dict[str, Any]) -> str:
    entries = obj.get("metadata", {}).get("managedFields") or []
    newest = max(entries, key=lambda e: e.get("time") or "", default={})
    return f"{newest.get('manager', '?')} ({newest.get('operation', '?')})" if newest else "?"


def bench(quick: bool = False) -> Section:
    count, edits = (30, 4) if quick else (100, 10)
    env = FleetEnv("drift", count)
    section = Section("drift", "Drift")
    results: list[Edit] = []
    with (state_dir("drift") as root,
          fleet("drift", root, [env], reconcile_interval=RECONCILE_INTERVAL) as f,
          shipline_running(f) as procs):
        started = time.monotonic()
        synced = f.wait_synced(timeout=600, procs=procs)
        say(f"Shipline synced {count} objects {synced:.1f} s after start; {edits} edits")
        deployments = [n for n in range(count) if n % 3 == 1]
        missed = 0
        for i in range(edits):
            kind = "scale" if i % 2 == 0 else "image"
            results.append(one_edit(f, env, deployments[i % len(deployments)], kind, started))
            r = results[-1]
            say(f"edit {i + 1}/{edits} ({kind} {r.name}): " +
                (f"corrected in {r.corrected:.2f} s by {r.manager}" if r.corrected is not None
                 else f"not corrected within {LIMIT:g} s"))
            missed = missed + 1 if r.corrected is None else 0
            if missed >= GIVE_UP_AFTER:
                say(f"{missed} edits in a row not corrected: stopping")
                break
            time.sleep(0.5)
        wrong = drifted(f, env)
    section.data = {"count": count, "planned": edits, "edits": [asdict(e) for e in results], "limit": LIMIT,
                    "reconcile_interval": RECONCILE_INTERVAL, "synced_after": synced, "left_drifted": wrong}
    report(section)
    return section


def report(section: Section) -> None:
    data = section.data
    edits = [Edit(**e) for e in data["edits"]]
    done = [e.corrected for e in edits if e.corrected is not None]
    missed = len(edits) - len(done)
    # A missed edit counts as slower than every corrected one: the median is over all edits run.
    ranked = sorted(done) + [float("inf")] * missed
    p50 = median(ranked) if ranked else float("inf")
    shown = (f"{p50:.2f} s / {max(done):.2f} s" if missed == 0 and done
             else f"p50 {p50:.2f} s; {missed} of {len(edits)} not corrected within {data['limit']:g} s")
    section.row(f"`kubectl scale`/`set image` → live spec back to Git's, p50 / max over {len(edits)} edits",
                shown, target=f"p50 ≤ {TARGET:g} s, none missed", met=p50 <= TARGET and missed == 0)
    if done:
        section.row("same, counted from kubectl's return, p50",
                    f"{median([e.after_kubectl for e in edits if e.after_kubectl is not None]):.2f} s")
    managers = sorted({e.manager for e in edits if e.manager})
    section.facts += [
        f"One environment of {data['count']} objects kept by a running Shipline (`bench/fleet.py` "
        f"`start_shipline`), `reconcile_interval` {data['reconcile_interval']} s; it was synced "
        f"{data['synced_after']:.1f} s after start. The edits ran {min(e.at for e in edits):.0f}–"
        f"{max(e.at for e in edits):.0f} s after start"
        + (", all before the first periodic re-sync could run." if max(e.at for e in edits) + data["limit"]
           < data["reconcile_interval"] else "."),
        f"{len(edits)} edits of {data['planned']} planned, alternating `kubectl scale --replicas=2` and "
        "`kubectl set image`, each on a different Deployment; a watch from the Deployment's resourceVersion "
        "timestamps the edit and the first state equal to Git's again (replicas and image). Per edit: "
        + ", ".join(f"{e.kind} {e.corrected:.2f} s" if e.corrected is not None else f"{e.kind} missed"
                    for e in edits) + ".",
        ("Corrected by (newest managedFields entry): " + ", ".join(managers) + "." if managers
         else f"No edit was corrected within {data['limit']:g} s.")
        + " Deployments still differing from Git at the end: "
        + (", ".join(data["left_drifted"]) if data["left_drifted"] else "none") + ".",
    ]
    if len(done) >= 2:
        section.facts.append(f"p90 of the corrected edits: {percentile(done, 90):.2f} s.")
