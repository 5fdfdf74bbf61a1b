"""The whole path on real parts: a git push → webhook → buildah build → registry → manifest bump
commit → server-side apply → a Deployment rolled out on kwok nodes. Receiver and worker run as
real processes (``shipline serve`` / ``shipline worker``), exactly as ``make up`` runs them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
from kubernetes import client

from devstack.process import wait_until
from devstack.stack import Stack

GIT = ["git", "-c", "user.name=Dev", "-c", "user.email=dev@example.com"]


def git(work: Path, *args: str) -> str:
    return subprocess.run([*GIT, "-C", str(work), *args], check=True, capture_output=True, text=True).stdout


def deployed_image(apps: client.AppsV1Api, namespace: str, name: str) -> str | None:
    try:
        dep = apps.read_namespaced_deployment(name, namespace)
    except client.ApiException:
        return None
    available = (dep.status.available_replicas or 0) >= (dep.spec.replicas or 1)
    return dep.spec.template.spec.containers[0].image if available else None


def deploy_log(stack: Stack, tmp: Path) -> list[str]:
    clone = tmp / "deploy-check"
    if clone.exists():
        git(clone, "pull", "-q")
    else:
        subprocess.run(["git", "clone", "-q", stack.git.repo_url("shop-deploy"), str(clone)], check=True,
                       capture_output=True)
    return git(clone, "log", "--format=%s").splitlines()


def test_push_builds_bumps_and_rolls_out_staging(running, tmp_path: Path) -> None:
    stack, work, apps = running["stack"], running["work"], running["apps"]
    (work / "frontend" / "index.html").write_text("<h1>frontend v2</h1>\n")
    git(work, "commit", "-qam", "frontend: v2")
    git(work, "push", "-q", "origin", "HEAD:main")
    short = git(work, "rev-parse", "--short=7", "HEAD").strip()
    count = git(work, "rev-list", "--first-parent", "--count", "HEAD").strip()
    want = f"{stack.registry.host}/shop/frontend:0.0.0-{count}-g{short}"
    wait_until(lambda: deployed_image(apps, "shop-staging", "frontend") == want, timeout=180,
               what=f"staging frontend rolled out as {want}",
               log=stack.service_daemons()[1].log_file)
    # only the changed service was built; production (release-only) did not move
    tags = httpx.get(f"{stack.registry.url}/v2/shop/backend/tags/list").json()
    assert tags.get("tags") in (None, []), tags
    assert deployed_image(apps, "shop-production", "frontend") in (None, f"{stack.registry.host}/shop/frontend:0.0.0")
    bumps = [s for s in deploy_log(stack, tmp_path) if "bump" in s]
    assert len(bumps) == 1, bumps

    def staging() -> dict:
        return next(t for t in running["http"].get("/api/targets").json()["targets"] if t["name"] == "staging")

    wait_until(lambda: want in staging().get("images", []) and staging()["health"] == "Healthy", timeout=60,
               what="staging status Healthy with the new image")
    def push_stages() -> list[str]:
        timeline = running["http"].get("/api/events", params={"source": "gitea"}).json()["events"]
        push = next(e for e in timeline if e["event"].get("repo") == "local/shop")
        return [s["stage"] for s in push["steps"]]

    wait_until(lambda: {"bump", "sync"} <= set(push_stages()), timeout=30,
               what="the push's timeline shows its bump and sync")
    assert push_stages()[:3] == ["delivery", "route", "build"], push_stages()


def test_release_tag_builds_everything_and_promotes_production_only(running, tmp_path: Path) -> None:
    stack, work, apps = running["stack"], running["work"], running["apps"]
    git(work, "tag", "1.0.0")
    git(work, "push", "-q", "origin", "1.0.0")
    for name in ("frontend", "backend"):
        want = f"{stack.registry.host}/shop/{name}:1.0.0"
        wait_until(lambda want=want, name=name: deployed_image(apps, "shop-production", name) == want,
                   timeout=180, what=f"production {name} at 1.0.0", log=stack.service_daemons()[1].log_file)
    log = deploy_log(stack, tmp_path)
    assert sum("production" in s for s in log if "bump" in s) <= 2  # one commit, or two if split by timing


def test_replaying_a_push_builds_and_commits_nothing_new(running, tmp_path: Path) -> None:
    http, stack = running["http"], running["stack"]
    before = deploy_log(stack, tmp_path)
    push = next(e for e in http.get("/api/events", params={"source": "gitea"}).json()["events"]
                if e["event"].get("repo") == "local/shop" and e["event"]["ref"] == "refs/heads/main")
    replay = http.post(f"/api/events/{push['id']}/replay").json()["event_id"]
    wait_until(lambda: http.get(f"/api/events/{replay}").json()["status"] in ("done", "failed"), timeout=120,
               what="replayed push processed")
    record = http.get(f"/api/events/{replay}").json()
    assert record["status"] == "done", record
    assert "retagged" in record["outcome"] or "built" not in record["outcome"], record["outcome"]
    import time

    time.sleep(3)
    assert deploy_log(stack, tmp_path) == before
