"""The whole path on real parts: a git push to Gitea → Gitea's own signed webhook → buildah build
→ registry → manifest bump commit (pushed to Gitea) → server-side apply → a Deployment rolled out
on kwok nodes, with the build's commit status on Gitea. Receiver and worker run as real processes
(``shipline serve`` / ``shipline worker``), exactly as ``make up`` runs them."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client

from devstack.gitea import Delivery
from devstack.process import wait_until

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


def deploy_log(running: dict[str, Any], tmp: Path) -> list[str]:
    clone = tmp / "deploy-check"
    if clone.exists():
        git(clone, "pull", "-q")
    else:
        subprocess.run(["git", "clone", "-q", running["repos"]["deploy"].clone_url, str(clone)], check=True,
                       capture_output=True)
    return git(clone, "log", "--format=%s").splitlines()


def push_event(running: dict[str, Any], ref: str = "refs/heads/main") -> dict[str, Any]:
    events = running["http"].get("/api/events", params={"source": "gitea"}).json()["events"]
    return next(e for e in events if e["event"].get("repo") == running["repos"]["app"].full_name
                and e["event"]["ref"] == ref)


def app_deliveries(running: dict[str, Any]) -> list[Delivery]:
    return running["stack"].gitea.deliveries(running["repos"]["app"])


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
    bumps = [s for s in deploy_log(running, tmp_path) if "bump" in s]
    assert len(bumps) == 1, bumps

    def staging() -> dict:
        found = running["http"].get("/api/environments").json()["environments"]
        return next(t for t in found if t["name"] == "staging")

    wait_until(lambda: want in staging().get("images", []) and staging()["health"] == "Healthy", timeout=60,
               what="staging status Healthy with the new image")
    def push_stages() -> list[str]:
        return [s["stage"] for s in push_event(running)["steps"]]

    wait_until(lambda: {"bump", "sync"} <= set(push_stages()), timeout=30,
               what="the push's timeline shows its bump and sync")
    assert push_stages()[:3] == ["delivery", "route", "build"], push_stages()


def applied(apps: client.AppsV1Api, namespace: str) -> dict[str, tuple[int, float]]:
    """Per Deployment: its generation and when Shipline's field manager last wrote it (the
    apiserver's own ``managedFields`` time)."""
    out = {}
    for dep in apps.list_namespaced_deployment(namespace).items:
        ours = [m.time for m in dep.metadata.managed_fields or [] if m.manager == "shipline"]
        out[dep.metadata.name] = (dep.metadata.generation, max(ours).timestamp() if ours else 0.0)
    return out


def test_a_release_tag_is_one_commit_and_one_sync_per_environment(running, tmp_path: Path) -> None:
    """Both images of the release reach each environment in one commit (counted in Git) and one
    sync (counted at the apiserver: each Deployment written once, both by the same apply burst)."""
    stack, work, apps = running["stack"], running["work"], running["apps"]
    # production's first sync (its seed objects) comes with the reconcile interval: not this release's
    wait_until(lambda: set(applied(apps, "shop-production")) == {"frontend", "backend"}, timeout=150,
               what="production's first sync", log=stack.service_daemons()[1].log_file)
    before_log = len(deploy_log(running, tmp_path))
    before = {env: applied(apps, f"shop-{env}") for env in ("staging", "production")}
    git(work, "tag", "1.0.0")
    git(work, "push", "-q", "origin", "1.0.0")
    for env, name in [(e, n) for e in ("production", "staging") for n in ("frontend", "backend")]:
        want = f"{stack.registry.host}/shop/{name}:1.0.0"
        wait_until(lambda want=want, env=env, name=name: deployed_image(apps, f"shop-{env}", name) == want,
                   timeout=180, what=f"{env} {name} at 1.0.0", log=stack.service_daemons()[1].log_file)
    time.sleep(5)  # anything a split release would still write, it writes now
    log = deploy_log(running, tmp_path)
    new = log[: len(log) - before_log]
    for env in ("staging", "production"):
        commits = [s for s in new if env in s]
        assert len(commits) == 1, new
        assert ("frontend" in commits[0] and "backend" in commits[0]) or "bump 2 images" in commits[0], commits
        after = applied(apps, f"shop-{env}")
        assert {n: g for n, (g, _) in after.items()} == {n: g + 1 for n, (g, _) in before[env].items()}, \
            f"{env}: each Deployment's spec written exactly once: {before[env]} → {after}"
        times = [t for _, t in after.values()]
        assert max(times) - min(times) <= 1.0, f"{env}: written by one sync, not two: {after}"


def test_the_push_arrived_as_giteas_own_signed_delivery(running) -> None:
    """The event's delivery id is the one Gitea sent and recorded, with its signature headers and
    our 202 as the answer."""
    push = push_event(running)
    sent = {d.id: d for d in app_deliveries(running)}
    delivery = sent[push["delivery_id"]]
    assert (delivery.event, delivery.succeeded, delivery.status) == ("push", True, 202), delivery
    assert push["event"]["after"] in delivery.response_body or push["id"] in delivery.response_body
    headers = {k.lower(): v for k, v in delivery.request_headers.items()}
    assert headers["x-gitea-delivery"] == push["delivery_id"] and len(headers["x-gitea-signature"]) == 64
    uuid.UUID(push["delivery_id"])


def test_the_build_left_pending_then_success_on_the_commit_in_gitea(running) -> None:
    gitea, push = running["stack"].gitea, push_event(running)
    sha = push["event"]["after"]
    path = f"/repos/{running['repos']['app'].full_name}/statuses/{sha}"
    wait_until(lambda: any(s["status"] == "success" for s in gitea.api("GET", path)), timeout=60,
               what="the build's success status on Gitea")
    ours = sorted((s for s in gitea.api("GET", path) if s["context"] == "shipline/build"), key=lambda s: s["id"])
    assert [s["status"] for s in ours][:2] == ["pending", "success"], ours
    assert ours[-1]["creator"]["login"] == gitea.admin and "image(s) pushed" in ours[-1]["description"]


def test_a_test_delivery_from_gitea_of_the_same_commit_is_a_duplicate(running) -> None:
    """Gitea's "test delivery" re-sends the branch head under a new delivery id: the receiver
    answers 200 duplicate (same repo, ref and sha), and nothing is built again."""
    gitea, repo = running["stack"].gitea, running["repos"]["app"]
    push = push_event(running)
    assert git(running["work"], "rev-parse", "HEAD").strip() == push["event"]["after"]
    (hook,) = gitea.api("GET", f"/repos/{repo.full_name}/hooks")
    before = len(app_deliveries(running))
    gitea.api("POST", f"/repos/{repo.full_name}/hooks/{hook['id']}/tests", json={})
    wait_until(lambda: len(app_deliveries(running)) > before and app_deliveries(running)[-1].delivered,
               timeout=30, what="Gitea's test delivery sent")
    redelivered = app_deliveries(running)[-1]
    assert redelivered.id != push["delivery_id"]
    assert (redelivered.succeeded, redelivered.status) == (True, 200), redelivered
    assert push["id"] in redelivered.response_body and "duplicate" in redelivered.response_body
    assert push_event(running)["id"] == push["id"]


def test_replaying_a_push_builds_and_commits_nothing_new(running, tmp_path: Path) -> None:
    http = running["http"]
    before = deploy_log(running, tmp_path)
    push = push_event(running)
    replay = http.post(f"/api/events/{push['id']}/replay").json()["event_id"]
    wait_until(lambda: http.get(f"/api/events/{replay}").json()["status"] in ("done", "failed"), timeout=120,
               what="replayed push processed")
    record = http.get(f"/api/events/{replay}").json()
    assert record["status"] == "done", record
    assert "retagged" in record["outcome"] or "built" not in record["outcome"], record["outcome"]
    import time

    time.sleep(3)
    assert deploy_log(running, tmp_path) == before
