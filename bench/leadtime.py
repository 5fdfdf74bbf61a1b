"""Lead time: a real ``buildah push`` of a new tag to the local registry → the registry's notification →
the staging manifests commit pushed → the change applied in the local cluster (→ rolled out).

The demo layout (``devstack.demo``: both repos on the stack's Gitea, with its own push webhooks)
with ``shipline serve`` and ``shipline worker`` running as real processes, exactly as ``make up``
runs them. The image is built once; each round tags it ``0.1.<n>`` and pushes that tag (bypassing
the git build, so what is timed starts at the registry).

- t0: ``buildah push`` returned;
- received: the delivery step of the registry's event (the receiver's clock);
- commit: the event's ``bump`` step, written right after the commit was pushed (its sha is checked
  on the remote);
- applied: the first poll (every 20 ms) that sees the Deployment's spec carry the new image;
- available: the first poll that sees that image rolled out (updated and available replicas);
- forge webhook: Gitea's push webhook for the bump commit, received (the delivery step of the
  manifests repo's ``gitea`` event for that sha), minus ``commit``: Gitea's own delivery latency.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.common import Section, git, median, percentile, poll, run, say, started, state_dir

NAMESPACE = "shop-staging"
DEPLOYMENT = "frontend"


def deployment_state(apps: Any, image: str) -> tuple[bool, bool]:
    """(spec carries ``image``, ``image`` is rolled out)."""
    from kubernetes import client

    try:
        dep = apps.read_namespaced_deployment(DEPLOYMENT, NAMESPACE)
    except client.ApiException:
        return False, False
    if dep.spec.template.spec.containers[0].image != image:
        return False, False
    status, want = dep.status, dep.spec.replicas or 0
    done = ((status.observed_generation or 0) >= (dep.metadata.generation or 0)
            and (status.updated_replicas or 0) >= want and (status.available_replicas or 0) >= want
            and (status.replicas or 0) == want)
    return True, done


def find_event(store: Any, tag: str) -> Any:
    for record in store.list(source="registry", limit=20):
        if record.event.get("tag") == tag:
            return record
    return None


def find_push(store: Any, sha: str) -> Any:
    for record in store.list(source="gitea", limit=20):
        if record.event.get("after") == sha:
            return record
    return None


def step_at(record: Any, stage: str) -> float | None:
    return next((s["at"] for s in record.steps if s["stage"] == stage), None)


def one_round(ctx: dict[str, Any], n: int) -> dict[str, float]:
    tag = f"0.1.{n}"
    image = f"{ctx['repository']}:{tag}"
    buildah = ctx["buildah"]
    run([*buildah, "tag", ctx["built"], image])
    run([*buildah, "push", "--tls-verify=false", image, f"docker://{image}"])
    t0 = time.time()
    applied = available = None
    deadline = time.monotonic() + 120
    while available is None and time.monotonic() < deadline:
        seen, done = deployment_state(ctx["apps"], image)
        now = time.time()
        if seen and applied is None:
            applied = now
        if done:
            available = now
        time.sleep(0.02)
    if applied is None or available is None:
        raise RuntimeError(f"{image} was not applied/rolled out within 120 s; see {ctx['logs']}")
    store = ctx["store"]
    record = poll(lambda: (r := find_event(store, tag)) is not None and step_at(r, "bump") and r,
                  timeout=60, interval=0.05, what=f"bump step of the event for {tag}")
    try:  # the sync that applied it writes a step; wait for it so rounds do not overlap
        record = poll(lambda: (r := find_event(store, tag)) is not None and step_at(r, "sync") and r,
                      timeout=15, interval=0.05, what="sync step")
    except TimeoutError:
        ctx["missing_sync_step"] += 1
    commit = next((s.get("commit") for s in record.steps if s["stage"] == "bump"), "")
    if not commit or commit not in ctx["remote_log"]():
        raise RuntimeError(f"bump commit {commit!r} for {tag} is not on the remote branch")
    received, committed = step_at(record, "delivery"), step_at(record, "bump")
    assert received is not None and committed is not None
    synced = step_at(record, "sync")
    try:
        push = poll(lambda: find_push(store, commit), timeout=15, interval=0.05, what="Gitea's webhook")
        forge = (step_at(push, "delivery") or float("nan")) - committed
    except TimeoutError:
        ctx["missing_forge_hook"] += 1
        forge = float("nan")
    return {"received": received - t0, "commit": committed - t0, "applied": applied - t0,
            "available": available - t0, "sync_done": (synced - t0) if synced else float("nan"),
            "forge_hook": forge}


def bench(quick: bool = False) -> Section:
    from kubernetes import client, config

    from devstack.baseimage import build_base_image, buildah_argv
    from devstack.demo import create_demo
    from devstack.kube import KubeCluster
    from devstack.stack import Stack
    from service.store import EventStore

    rounds = 6 if quick else 30
    section = Section("leadtime", "Lead time")
    with state_dir("leadtime") as root:
        stack = Stack(root / "stack")
        with started(stack.redis, stack.registry, stack.gitea):
            say("base image, control plane, demo repos")
            build_base_image(stack.state_dir, stack.registry.host)
            cluster = KubeCluster.start(stack.kube_dir)
            try:
                repos = create_demo(stack, kubeconfig=cluster.kubeconfig)
                stack.start_services()
                try:
                    stack.wait_services()
                    ctx = _context(stack, cluster.kubeconfig, repos["deploy"].clone_url, root, client, config,
                                   EventStore, buildah_argv)
                    say("warm-up push (first sync creates the staging namespace)")
                    one_round(ctx, 0)
                    results = []
                    for n in range(1, rounds + 1):
                        results.append(one_round(ctx, n))
                        r = results[-1]
                        say(f"push {n}/{rounds}: commit {r['commit']:.2f} s, applied {r['applied']:.2f} s, "
                            f"available {r['available']:.2f} s")
                finally:
                    for daemon in stack.service_daemons():
                        daemon.stop()
            finally:
                cluster.stop()
    _report(section, results, ctx["missing_sync_step"], ctx["missing_forge_hook"])
    return section


def _context(stack: Any, kubeconfig: Path, deploy_url: str, root: Path, client: Any, config: Any,
             event_store: Any, buildah_argv: Any) -> dict[str, Any]:
    buildah = buildah_argv(stack.state_dir)
    context = root / "image"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {stack.base_image}\nRUN echo lead-time > /srv.txt\n")
    built = f"{stack.registry.host}/shop/frontend:built"
    run([*buildah, "bud", "--isolation", "chroot", "--layers", "--tls-verify=false", "-t", built, str(context)])
    clone = root / "deploy-check"
    git(root, "clone", "-q", deploy_url, str(clone))

    def remote_log() -> str:
        git(clone, "fetch", "-q", "origin")
        return git(clone, "log", "--format=%H", "origin/main")

    return {"buildah": buildah, "built": built, "repository": f"{stack.registry.host}/shop/frontend",
            "apps": client.AppsV1Api(config.new_client_from_config(str(kubeconfig))),
            "store": event_store.from_url(stack.redis.url), "remote_log": remote_log,
            "logs": stack.state_dir / "run", "missing_sync_step": 0, "missing_forge_hook": 0}


def _report(section: Section, results: list[dict[str, float]], missing: int, missing_hook: int) -> None:
    def col(key: str) -> list[float]:
        return [r[key] for r in results]

    hooks = [h for h in col("forge_hook") if h == h]  # NaN: no webhook seen

    commit50, commit95 = median(col("commit")), percentile(col("commit"), 95)
    applied50, applied95 = median(col("applied")), percentile(col("applied"), 95)
    section.row("push → manifest commit pushed, p50 / p95", f"{commit50:.2f} s / {commit95:.2f} s",
                target="p50 ≤ 1 s", met=commit50 <= 1.0)
    section.row("push → applied in the cluster, p50 / p95", f"{applied50:.2f} s / {applied95:.2f} s",
                target="p50 ≤ 2 s", met=applied50 <= 2.0)
    section.row("push → rolled out (Available), p50 / p95",
                f"{median(col('available')):.2f} s / {percentile(col('available'), 95):.2f} s")
    stages = [("notification received", "received"), ("commit pushed", "commit"), ("applied", "applied"),
              ("rolled out", "available")]
    section.facts += [
        f"{len(results)} pushes after a warm-up, one at a time (each waits for the previous sync to finish). "
        "Seconds after `buildah push` returned, p50 / p95 / max: " + "; ".join(
            f"{label} {median(col(key)):.2f} / {percentile(col(key), 95):.2f} / {max(col(key)):.2f}"
            for label, key in stages) + ".",
        "Per hop, p50: notification → commit " f"{median([r['commit'] - r['received'] for r in results]):.2f} s, "
        f"commit → applied {median([r['applied'] - r['commit'] for r in results]):.2f} s, "
        f"applied → rolled out {median([r['available'] - r['applied'] for r in results]):.2f} s.",
        "`commit pushed` is when the bump step was written, right after `git push` to Gitea returned. Gitea "
        "delivers the manifests repo's push webhook from its queue after the push; commit → that webhook "
        "received, p50 / max: " + (f"{median(hooks):.2f} s / {max(hooks):.2f} s" if hooks else "none arrived")
        + f" ({missing_hook} rounds without one within 15 s).",
        f"Rounds (warm-up included) whose event never got its `sync` step within 15 s of the rollout: {missing} "
        "(see the note on coalesced syncs).",
    ]
