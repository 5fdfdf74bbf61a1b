"""Build backends side by side: one push that changes 4 images, built at once (``parallelism: 4``)
by the local backend (buildah in the worker) and by the Job backend (one Kubernetes Job per image
on the stack's real node), alternating which goes first each round.

Measured per round: wall time of ``build_push`` (push received → 4 digests recorded) and the
worker's CPU time (the benchmark process is the worker: ``getrusage`` of itself plus the children
it waited for, i.e. buildah and git for the local backend; the stack's daemons, its children
too, are still running and not counted), plus, for the Job backend, the CPU the build pods used on the
node (the cgroup ``cpuacct`` of the node's pods). Each Job starts from an empty storage (an
emptyDir), so it pulls its base image every time; the local backend keeps its layer cache.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

from bench.build import build_stack
from bench.common import Section, git, median, say

IMAGES = 4
DOCKERFILE = """FROM {base}
COPY round.txt /round.txt
RUN i=0; while [ $i -lt 150000 ]; do i=$((i+1)); done; echo "$i" > /spun.txt
"""


def worker_cpu_seconds() -> float:
    """User + system CPU of this process and of the children it has waited for."""
    own, reaped = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime


def node_cpu_seconds(cgroup_root: str) -> float:
    """CPU used by every pod of the node so far (cgroup v1 cpuacct, nanoseconds)."""
    usage = Path("/sys/fs/cgroup/cpuacct") / cgroup_root.strip("/") / "kubepods" / "cpuacct.usage"
    try:
        return int(usage.read_text()) / 1e9
    except (OSError, ValueError):
        return float("nan")


def bench(quick: bool = False) -> Section:
    from devstack.buildjobs import provision, push_builder_image
    from devstack.kube import KubeCluster
    from devstack.realnode import RealNode, selector
    from handlers.build.run import build_push
    from handlers.build.storage import storage_driver
    from handlers.events import GitPushed
    from handlers.settings import BuildSettings, ClusterConfig, JobBuildSettings, RegistryConfig, RepoConfig

    rounds = 1 if quick else 3
    section = Section("buildjobs", "Build backends: local vs Kubernetes Jobs")
    with build_stack("buildjobs") as built:
        root, registry, server, base = built.root, built.registry, built.server, built.base
        stack = root / "stack"
        say("starting the control plane and the real node")
        cluster = KubeCluster.start(root / "kube")
        node = RealNode.start(cluster, registry_host=registry.host, images_state_dir=stack, probe_image=base,
                              relay_ports=[server.port])
        try:
            say("building the builder image (Debian base + buildah)")
            builder_image = push_builder_image(stack, registry.host)
            provision(cluster.kubeconfig)
            url = server.create_repo("app")
            work = root / "app"
            git(root, "clone", "-q", url, str(work))
            names = [f"svc{i}" for i in range(IMAGES)]
            repo = RepoConfig.model_validate({"name": "app", "url": url, "branches": ["main"], "images": [
                {"name": f"{registry.host}/bench/{n}", "context": n, "tags": ["{short_sha}"]} for n in names]})
            registries = [RegistryConfig(host=registry.host, insecure=True)]
            place = selector()
            job = JobBuildSettings(image=builder_image, cluster=ClusterConfig(kubeconfig=cluster.kubeconfig),
                                   host_network=True, node_selector=place["nodeSelector"],
                                   tolerations=place["tolerations"], requests={"cpu": "100m", "memory": "128Mi"},
                                   limits={"memory": "1Gi"})
            backends = {"local": BuildSettings(parallelism=IMAGES),
                        "job": BuildSettings(parallelism=IMAGES, backend="job", job=job)}
            counter = iter(range(10_000))

            def push_all() -> GitPushed:
                n = next(counter)
                before = git(work, "rev-parse", "HEAD").strip() if n else "0" * 40
                for name in names:
                    (work / name).mkdir(exist_ok=True)
                    (work / name / "Dockerfile").write_text(DOCKERFILE.format(base=base))
                    (work / name / "round.txt").write_text(f"round {n}\n")
                git(work, "add", "-A")
                git(work, "commit", "-qm", f"round {n}")
                git(work, "push", "-q", "origin", "HEAD:main")
                after = git(work, "rev-parse", "HEAD").strip()
                return GitPushed(repo="bench/app", ref="refs/heads/main", before=before, after=after,
                                 changed_paths=(), pusher="bench", delivery_id=after[:12], source="gitea",
                                 clone_url=url)

            def one_round(backend: str) -> dict[str, float]:
                event = push_all()
                cpu0, node0, began = worker_cpu_seconds(), node_cpu_seconds(
                    node.layout.cgroup_root), time.perf_counter()
                report = build_push(repo, event, settings=backends[backend], registries=registries,
                                    state_dir=root / f"worker-{backend}")
                wall = time.perf_counter() - began
                statuses = [i.status for i in report.images]
                if statuses != ["built"] * IMAGES:
                    raise RuntimeError(f"{backend}: not every image built: {report.to_dict()}")
                return {"wall": wall, "worker_cpu": worker_cpu_seconds() - cpu0,
                        "node_cpu": node_cpu_seconds(node.layout.cgroup_root) - node0}

            # Resolved once up front: four threads probing a fresh storage at once trip over each
            # other (handlers.build.storage's probe directory).
            storage_driver("auto", root / "worker-local" / "buildah" / "storage")
            say("warm-up round on each side (base image into the local storage, builder image onto the node)")
            one_round("local")
            one_round("job")
            results: dict[str, list[dict[str, float]]] = {"local": [], "job": []}
            for n in range(rounds):
                order = ["local", "job"] if n % 2 == 0 else ["job", "local"]
                for backend in order:
                    results[backend].append(one_round(backend))
                say(f"round {n + 1}: " + ", ".join(
                    f"{b} {results[b][-1]['wall']:.1f} s wall, {results[b][-1]['worker_cpu']:.2f} s worker CPU"
                    for b in ("local", "job")))
        finally:
            node.stop()
            cluster.stop()
    _report(section, results, rounds)
    return section


def _report(section: Section, results: dict[str, list[dict[str, float]]], rounds: int) -> None:
    def med(backend: str, key: str) -> float:
        return median([r[key] for r in results[backend]])

    wall_job, wall_local = med("job", "wall"), med("local", "wall")
    cpu_job, cpu_local = med("job", "worker_cpu"), med("local", "worker_cpu")
    section.row(f"{IMAGES} images at once: wall time, median", f"{wall_job:.1f} s (Job)",
                baseline=f"{wall_local:.1f} s (local buildah)", ratio=f"{wall_job / wall_local:.2f}×")
    section.row(f"{IMAGES} images at once: worker CPU, median", f"{cpu_job:.2f} s (Job)",
                baseline=f"{cpu_local:.2f} s (local buildah)", ratio=f"{cpu_job / cpu_local:.2f}×")
    section.data = {"results": results}
    section.facts += [
        f"{rounds} rounds after a warm-up on each side, alternating which backend goes first; each round is one "
        f"push changing all {IMAGES} images (a COPY of a changed file, then a RUN that spins the shell for a "
        "while), built with `parallelism: 4`.",
        "Job backend: CPU the build pods used on the node, median "
        f"{med('job', 'node_cpu'):.2f} s per round (cgroup cpuacct of the node's pods), off the worker.",
        "Per round, local: " + ", ".join(f"{r['wall']:.1f} s / {r['worker_cpu']:.2f} s CPU" for r in results["local"])
        + "; Job: " + ", ".join(f"{r['wall']:.1f} s / {r['worker_cpu']:.2f} s CPU" for r in results["job"]) + ".",
        "Both backends on the same machine (2 cores): the Job backend's pods compete with the worker for them; "
        "its gain is the worker's CPU (the build runs elsewhere), its cost the per-Job start (scheduling, pulling "
        "the base into an empty storage, a fresh vfs copy) that the local layer cache avoids.",
    ]
