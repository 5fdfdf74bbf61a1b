"""Bump: a manifests repo of 10,000 YAML files with one marked image, one image change, from the
call of ``handlers.bump.bump`` to the commit pushed to the (local HTTP) git server, side by side
with the floor: what a shell script does for the same change.

The floor, run by the bench itself on a twin repository (same files, same server) from its own
up-to-date working clone: ``git grep -l`` for the marker, ``sed -i`` of the tag, ``git commit -a``,
``git push``. It does no fetch (its clone is the only writer of its twin); Shipline's bump fetches
the branch head first, because other writers may have moved it. Rounds alternate which side goes
first. Warm: the clone under the state dir already exists (every bump after the first). Cold: a
fresh state dir, so the first bump fetches the whole repository. Phases are timed by wrapping the
functions ``bump`` calls.
"""

from __future__ import annotations

import contextlib
import functools
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import Section, git, median, ms, run, say, started, state_dir

IMAGE = "registry.example.com/shop/frontend"
MARKER = "STAGING_IMAGE_TAG"
DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels: {{app: {name}, team: team-{team}}}
spec:
  replicas: 2
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
        - name: {name}
          image: {image}
          ports: [{{containerPort: 8080}}]
          env:
            - {{name: LOG_LEVEL, value: info}}
"""
CONFIGMAP = """apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}
data:
  settings.yaml: |
    feature_flags: [a, b, c]
    owner: team-{team}
"""


def write_repo(work: Path, files: int) -> str:
    """``files`` YAML files under ``deploy/``; exactly one carries the marker. Returns its path."""
    marked = "deploy/team-042/frontend.yaml"
    for n in range(files - 1):
        team = n % 100
        name = f"svc-{n:05d}"
        text = (DEPLOYMENT.format(name=name, team=team, image=f"registry.example.com/team-{team}/{name}:1.4.{n % 7}")
                if n % 2 else CONFIGMAP.format(name=name, team=team))
        path = work / "deploy" / f"team-{team:03d}" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (work / marked).write_text(DEPLOYMENT.format(name="frontend", team=42, image=f"{IMAGE}:1.0.0 # {MARKER}"))
    return marked


def environment(url: str) -> Any:
    from handlers.settings import EnvironmentConfig

    return EnvironmentConfig.model_validate({
        "name": "staging", "git": {"url": url, "branch": "main", "path": "deploy"}, "markers": [MARKER],
        "images": [{"image": IMAGE, "policy": {"semver": ">=0.0.0"}}],
    })


@contextlib.contextmanager
def phase_timer() -> Iterator[dict[str, list[float]]]:
    """Time the steps of ``handlers.bump.bump`` by wrapping what it calls (restored afterwards)."""
    import handlers.bump as bump_module
    from handlers.gitops import ManifestsRepo

    phases: dict[str, list[float]] = {}
    targets = [(ManifestsRepo, "fetch_head", "fetch"), (ManifestsRepo, "event_ids", "trailer scan"),
               (ManifestsRepo, "tree", "tree listing"), (ManifestsRepo, "read_blobs", "blob reads"),
               (bump_module, "scan_sources", "screen + marker scan"), (bump_module, "edit", "YAML edit"),
               (ManifestsRepo, "commit_files", "commit"), (ManifestsRepo, "push", "push")]
    saved = [(owner, attr, getattr(owner, attr)) for owner, attr, _ in targets]

    def wrap(fn: Any, label: str) -> Any:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                phases.setdefault(label, []).append(time.perf_counter() - began)
        return timed

    for (owner, attr, label), (_, _, original) in zip(targets, saved, strict=True):
        setattr(owner, attr, wrap(original, label))
    try:
        yield phases
    finally:
        for owner, attr, original in saved:
            setattr(owner, attr, original)


def one_bump(env: Any, state: Path, tag: str, url: str) -> float:
    from handlers.bump import bump
    from handlers.manifests import ImageUpdate
    from service.store import new_event_id

    began = time.perf_counter()
    result = bump(env, [ImageUpdate(image=IMAGE, tag=tag)], [new_event_id()], state)
    elapsed = time.perf_counter() - began
    if not result.commit or len(result.changes) != 1:
        raise RuntimeError(f"bump to {tag} did not commit exactly one change: {result}")
    remote = git(state, "ls-remote", url, "refs/heads/main").split()[0]
    if remote != result.commit:
        raise RuntimeError(f"remote head {remote} is not the bump commit {result.commit}")
    return elapsed


def floor_bump(work: Path, tag: str, url: str) -> float:
    """``git grep`` + ``sed`` + commit + push, as a script would, timed end to end."""
    began = time.perf_counter()
    files = git(work, "grep", "-l", "-F", f"# {MARKER}", "--", "deploy").split()
    run(["sed", "-i", "-E", rf"s|:[^:@ ]+( # {MARKER})|:{tag}\1|", *files], cwd=work)
    git(work, "commit", "-qam", f"bump frontend to {tag}")
    git(work, "push", "-q", "origin", "HEAD:main")
    elapsed = time.perf_counter() - began
    head = git(work, "rev-parse", "HEAD").strip()
    if git(work, "ls-remote", url, "refs/heads/main").split()[0] != head or len(files) != 1:
        raise RuntimeError(f"floor bump to {tag} did not land (files {files})")
    if not re.search(rf":{re.escape(tag)} # {MARKER}", (work / files[0]).read_text()):
        raise RuntimeError(f"floor bump to {tag} did not edit {files[0]}")
    return elapsed


def seed_repo(server: Any, root: Path, name: str, files: int) -> tuple[str, Path, str]:
    url = server.create_repo(name)
    work = root / name
    git(root, "clone", "-q", url, str(work))
    marked = write_repo(work, files)
    git(work, "add", "-A")
    git(work, "commit", "-qm", f"{files} manifests")
    git(work, "push", "-q", "origin", "HEAD:main")
    return url, work, marked


def bench(quick: bool = False) -> Section:
    from devstack.gitrepos import GitServer
    from devstack.process import free_port

    files = 10_000
    rounds = 3 if quick else 7
    section = Section("bump", "Bump")
    with state_dir("bump") as root:
        server = GitServer(root / "stack", free_port())
        with started(server):
            say(f"writing {files} YAML files twice (Shipline's repo and the floor's twin) and pushing them")
            url, work, marked = seed_repo(server, root, "manifests", files)
            floor_url, floor_work, _ = seed_repo(server, root, "floor", files)
            size = sum(p.stat().st_size for p in (work / "deploy").rglob("*.yaml"))
            env = environment(url)
            state = root / "shipline"
            cold = one_bump(env, state, "1.0.1", url)
            floor_bump(floor_work, "1.0.1", floor_url)
            say(f"cold bump (clone included): {cold:.2f} s")
            ship: list[float] = []
            floor: list[float] = []
            with phase_timer() as phases:
                for n in range(rounds):
                    tag = f"1.0.{n + 2}"
                    sides = [functools.partial(lambda t: ship.append(one_bump(env, state, t, url)), tag),
                             functools.partial(lambda t: floor.append(floor_bump(floor_work, t, floor_url)), tag)]
                    for side in sides if n % 2 == 0 else reversed(sides):
                        side()
                    say(f"round {n + 1}: Shipline {ship[-1] * 1000:.0f} ms, floor {floor[-1] * 1000:.0f} ms")
    p50, f50 = median(ship), median(floor)
    section.row("event → pushed commit, warm clone (median)", ms(p50),
                baseline=f"{ms(f50)} (`git grep` + `sed` + commit + push)", ratio=f"{p50 / f50:.2f}×",
                target="≤ 250 ms and ≤ 1.5× floor", met=p50 <= 0.25 and p50 <= 1.5 * f50)
    section.row("same, worst of the warm runs", ms(max(ship)), baseline=ms(max(floor)))
    section.row("first bump, empty state dir (fetches the whole repo)", ms(cold))
    breakdown = ", ".join(f"{label} {ms(median(values))}" for label, values in phases.items())
    section.facts += [
        f"{files} files ({size / 1e6:.1f} MB) under `deploy/`, half Deployments, half ConfigMaps; the marker "
        f"(`# {MARKER}`) is in `{marked}`. Git over HTTP to the stack's git server on 127.0.0.1.",
        f"{rounds} warm rounds after a cold bump, alternating which side goes first, each a new semver tag, each "
        "verified on the remote with `git ls-remote`. Shipline (ms): " + ", ".join(f"{x * 1000:.0f}" for x in ship)
        + "; floor (ms): " + ", ".join(f"{x * 1000:.0f}" for x in floor) + ".",
        "Floor: on a twin repository, from its own clone (the only writer, so no fetch): `git grep -l -F`, "
        "`sed -i`, `git commit -qam`, `git push`. Shipline: fetch of the branch head, trailer scan, "
        "`git ls-tree` of the head, screening of blobs not seen before (by blob id), parse and edit of the "
        "marked files, a commit written with `git fast-import`, push; no working tree.",
        f"Median phases of a warm Shipline bump: {breakdown}.",
    ]
    return section
