"""Lead time: a real ``buildah push`` of a new tag to the local registry → the registry's notification →
the staging manifests commit pushed → the change applied in the local cluster (→ rolled out).

The demo layout (``devstack.demo``: both repos on the stack's Gitea, with its own push webhooks)
with ``shipline serve`` and ``shipline worker`` running as real processes, exactly as ``make up``
runs them. The image is built once; each round tags it ``0.1.<n>-lead`` and pushes that tag
(bypassing the git build, so what is timed starts at the registry). A prerelease tag, as a
main-branch build makes, so staging alone takes it: a release tag would also bump production, in
its own commit to the same branch, one after the other under the branch's write lock.

- t0: ``buildah push`` returned;
- received: the delivery step of the registry's event (the receiver's clock);
- commit: the event's ``bump`` step, written right after the commit was pushed (its sha is checked
  on the remote);
- applied: the first poll (every 20 ms) that sees the Deployment's spec carry the new image;
- available: the first poll that sees that image rolled out (updated and available replicas);
- forge webhook: Gitea's push webhook for the bump commit, received (the delivery step of the
  manifests repo's ``gitea`` event for that sha), minus ``commit``: Gitea's own delivery latency.

Then the whole path, the demo's shape: a commit to ``frontend/`` of the app repo pushed to Gitea →
Gitea's webhook → buildah builds the one changed image and pushes it → the registry's notification →
the bump commit → the sync → staging rolled out. Timed from the push's delivery step (the receiver's
clock: "git push received") to the first poll that sees the new tag rolled out.
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


def watch_rollout(ctx: dict[str, Any], image: str, *, timeout: float) -> tuple[float, float]:
    """Wall-clock times of the first polls (every 20 ms) that see ``image`` in the spec / rolled out."""
    applied = available = None
    deadline = time.monotonic() + timeout
    while available is None and time.monotonic() < deadline:
        seen, done = deployment_state(ctx["apps"], image)
        now = time.time()
        if seen and applied is None:
            applied = now
        if done:
            available = now
        time.sleep(0.02)
    if applied is None or available is None:
        raise RuntimeError(f"{image} was not applied/rolled out within {timeout:g} s; see {ctx['logs']}")
    return applied, available


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


def staging_bump(record: Any) -> dict[str, Any] | None:
    """The event's bump step for staging that made a commit."""
    return next((s for s in record.steps if s["stage"] == "bump" and s.get("environment") == "staging"
                 and s.get("commit")), None)


def one_round(ctx: dict[str, Any], n: int) -> dict[str, float]:
    tag = f"0.1.{n}-lead"  # a prerelease: staging takes it, production (release tags only) does not
    image = f"{ctx['repository']}:{tag}"
    buildah = ctx["buildah"]
    run([*buildah, "tag", ctx["built"], image])
    run([*buildah, "push", "--tls-verify=false", image, f"docker://{image}"])
    t0 = time.time()
    applied, available = watch_rollout(ctx, image, timeout=120)
    store = ctx["store"]
    record = poll(lambda: (r := find_event(store, tag)) is not None and staging_bump(r) and r,
                  timeout=60, interval=0.05, what=f"bump step of the event for {tag}")
    try:  # the sync that applied it writes a step; wait for it so rounds do not overlap
        record = poll(lambda: (r := find_event(store, tag)) is not None and step_at(r, "sync") and r,
                      timeout=15, interval=0.05, what="sync step")
    except TimeoutError:
        ctx["missing_sync_step"] += 1
    bumped = staging_bump(record) or {}
    commit = bumped.get("commit", "")
    if not commit or commit not in ctx["remote_log"]():
        raise RuntimeError(f"bump commit {commit!r} for {tag} is not on the remote branch")
    received, committed = step_at(record, "delivery"), bumped.get("at")
    routed = step_at(record, "route") or float("nan")  # written when the bump job was enqueued
    assert received is not None and committed is not None
    synced = step_at(record, "sync")
    try:
        push = poll(lambda: find_push(store, commit), timeout=15, interval=0.05, what="Gitea's webhook")
        forge = (step_at(push, "delivery") or float("nan")) - committed
    except TimeoutError:
        ctx["missing_forge_hook"] += 1
        forge = float("nan")
    return {"received": received - t0, "routed": routed - t0, "commit": committed - t0, "applied": applied - t0,
            "available": available - t0, "sync_done": (synced - t0) if synced else float("nan"),
            "forge_hook": forge}


FLOOR_BRANCH = "bench-floor"
FLOOR_ROUNDS = 10


def gitea_floor(work: Path, n: int) -> float:
    """The bump's git work done plainly against the same Gitea: fetch a branch head, commit one
    changed file, push it. On a branch of the manifests repo that no environment follows, so the
    forge's hooks run as for a bump but nothing is synced."""
    began = time.perf_counter()
    if n:
        git(work, "fetch", "-q", "origin", FLOOR_BRANCH)
        git(work, "reset", "-q", "--hard", "FETCH_HEAD")
    (work / "floor.txt").write_text(f"floor {n}\n")
    git(work, "add", "floor.txt")
    git(work, "commit", "-qm", f"floor {n}")
    git(work, "push", "-q", "origin", f"HEAD:refs/heads/{FLOOR_BRANCH}")
    return time.perf_counter() - began


def git_round(ctx: dict[str, Any], n: int) -> dict[str, float]:
    """One git push of a frontend change; seconds from its delivery to the new tag applied / rolled out."""
    work = ctx["app"]
    (work / "frontend" / "index.html").write_text(f"<p>lead time {n}</p>\n")
    git(work, "commit", "-qam", f"frontend: lead time {n}")
    git(work, "push", "-q", "origin", "HEAD:main")
    pushed = time.time()
    sha = git(work, "rev-parse", "HEAD").strip()
    count = git(work, "rev-list", "--first-parent", "--count", "HEAD").strip()
    image = f"{ctx['repository']}:0.0.0-{count}-g{sha[:7]}"
    applied, available = watch_rollout(ctx, image, timeout=180)
    record = poll(lambda: find_push(ctx["store"], sha), timeout=30, interval=0.05, what=f"the push of {sha[:7]}")
    received = step_at(record, "delivery")
    assert received is not None
    built = max((s["at"] for s in record.steps if s["stage"] == "build"), default=None)  # its last: done
    return {"push_to_received": received - pushed, "built": (built - received) if built else float("nan"),
            "applied": applied - received, "available": available - received}


def bench(quick: bool = False) -> Section:
    from kubernetes import client, config

    from devstack.baseimage import build_base_image, buildah_argv
    from devstack.demo import clone_argv, create_demo
    from devstack.kube import KubeCluster
    from devstack.stack import Stack
    from service.store import EventStore

    rounds = 6 if quick else 30
    git_rounds = 5 if quick else 20
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
                    # git pushes first: their tags (0.0.0-<n>-g<sha>) rank below the registry rounds' 0.1.<n>-lead
                    ctx["app"] = root / "shop"
                    run(clone_argv(stack, repos["app"].clone_url, ctx["app"]))
                    say("warm-up git push (the first build of the app; the first sync creates the namespace)")
                    git_round(ctx, 0)
                    pushes = []
                    for n in range(1, git_rounds + 1):
                        pushes.append(git_round(ctx, n))
                        say(f"git push {n}/{git_rounds}: rolled out {pushes[-1]['available']:.2f} s after received")
                    say("warm-up registry push")
                    one_round(ctx, 0)
                    results = []
                    for n in range(1, rounds + 1):
                        results.append(one_round(ctx, n))
                        r = results[-1]
                        say(f"push {n}/{rounds}: commit {r['commit']:.2f} s, applied {r['applied']:.2f} s, "
                            f"available {r['available']:.2f} s")
                    floor_clone = root / "floor"
                    run(clone_argv(stack, repos["deploy"].clone_url, floor_clone))
                    floors = [gitea_floor(floor_clone, n) for n in range(FLOOR_ROUNDS + 1)][1:]  # 0: warm-up
                    say(f"Gitea floor (fetch + commit + push): p50 {median(floors):.2f} s")
                finally:
                    for daemon in stack.service_daemons():
                        daemon.stop()
            finally:
                cluster.stop()
    _report(section, results, ctx["missing_sync_step"], ctx["missing_forge_hook"], floors)
    _report_pushes(section, pushes)
    return section


def _report_pushes(section: Section, pushes: list[dict[str, float]]) -> None:
    def col(key: str) -> list[float]:
        return [r[key] for r in pushes if r[key] == r[key]]

    rolled = col("available")
    section.row(f"git push received → staging rolled out, build included, p50 / p95 over {len(pushes)} pushes",
                f"{median(rolled):.2f} s / {percentile(rolled, 95):.2f} s", target="p50 ≤ 3 s",
                met=median(rolled) <= 3.0)
    section.facts.append(
        f"Git pushes ({len(pushes)} after a warm-up, one at a time, each a one-line change to `frontend/`): "
        f"seconds after the push's delivery, p50 / max: build step done {median(col('built')):.2f} / "
        f"{max(col('built')):.2f}, applied {median(col('applied')):.2f} / {max(col('applied')):.2f}, rolled out "
        f"{median(rolled):.2f} / {max(rolled):.2f}; `git push` returned → Gitea's webhook received, p50 "
        f"{median(col('push_to_received')):.2f} s (Gitea's own delivery, not counted in the row).")


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


def _report(section: Section, results: list[dict[str, float]], missing: int, missing_hook: int,
            floors: list[float]) -> None:
    def col(key: str) -> list[float]:
        return [r[key] for r in results]

    hooks = [h for h in col("forge_hook") if h == h]  # NaN: no webhook seen

    commit50, commit95 = median(col("commit")), percentile(col("commit"), 95)
    applied50, applied95 = median(col("applied")), percentile(col("applied"), 95)
    section.row("push → manifest commit pushed, p50 / p95", f"{commit50:.2f} s / {commit95:.2f} s",
                target="p50 ≤ 1 s", met=commit50 <= 1.0)
    section.row("push → applied in the cluster, p50 / p95", f"{applied50:.2f} s / {applied95:.2f} s",
                target="p50 ≤ 0.5 s", met=applied50 <= 0.5)
    section.row("push → rolled out (Available), p50 / p95",
                f"{median(col('available')):.2f} s / {percentile(col('available'), 95):.2f} s")
    stages = [("notification received", "received"), ("commit pushed", "commit"), ("applied", "applied"),
              ("rolled out", "available")]
    section.facts += [
        "Registry rounds push prerelease tags (`0.1.<n>-lead`), as a main-branch build makes: staging alone takes "
        "them (a release tag also bumps production, one commit after the other on the shared branch).",
        f"{len(results)} pushes after a warm-up, one at a time (each waits for the previous sync to finish). "
        "Seconds after `buildah push` returned, p50 / p95 / max: " + "; ".join(
            f"{label} {median(col(key)):.2f} / {percentile(col(key), 95):.2f} / {max(col(key)):.2f}"
            for label, key in stages) + ".",
        "Per hop, p50: notification → commit " f"{median([r['commit'] - r['received'] for r in results]):.2f} s "
        f"(of which received → routed, the events queue and `process_event`, "
        f"{median([r['routed'] - r['received'] for r in results]):.2f} s; routed → commit pushed, the bump "
        f"queue and the bump's fetch, commit and push to Gitea, "
        f"{median([r['commit'] - r['routed'] for r in results]):.2f} s; the same git work done plainly, "
        f"`git fetch` + `commit` + `push` of one file to the same Gitea, p50 {median(floors):.2f} s over "
        f"{len(floors)} rounds in this run), "
        f"commit → applied {median([r['applied'] - r['commit'] for r in results]):.2f} s, "
        f"applied → rolled out {median([r['available'] - r['applied'] for r in results]):.2f} s.",
        "`commit pushed` is when the bump step was written, right after `git push` to Gitea returned. Gitea "
        "delivers the manifests repo's push webhook from its queue after the push; commit → that webhook "
        "received, p50 / max: " + (f"{median(hooks):.2f} s / {max(hooks):.2f} s" if hooks else "none arrived")
        + f" ({missing_hook} rounds without one within 15 s).",
        f"Rounds (warm-up included) whose event never got its `sync` step within 15 s of the rollout: {missing} "
        "(see the note on coalesced syncs).",
    ]
