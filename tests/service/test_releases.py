"""A release is one unit (real Redis and a real Git remote): the images one push builds reach each
environment in one bump; a Degraded release is reverted in Git by a commit of Shipline's own, and
its tags are held back; a commit Shipline did not make is never reverted."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from handlers import bump as bump_module
from handlers.bump import BumpResult
from handlers.errors import PermanentError
from handlers.events import GitPushed, ImagePushed, event_to_dict
from handlers.sync.health import Health
from handlers.sync.objects import ObjRef
from handlers.sync.reconcile import SyncResult
from service import rollback
from service.config import parse_config
from service.pipeline import Pipeline
from service.store import EventRecord, EventStore, new_event_id

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]


def image_event(store: EventStore, image: str, tag: str) -> str:
    registry, repository = image.split("/", 1)
    event = ImagePushed(registry=registry, repository=repository, tag=tag, digest="", delivery_id="",
                        source="registry")
    rec = EventRecord(id=new_event_id(), source="registry", receiver="default", kind=event.kind,
                      event=event_to_dict(event))
    store.save(rec)
    return rec.id


def test_the_images_of_one_push_reach_each_environment_in_one_bump(stack, redis_client, tmp_path,
                                                                    monkeypatch) -> None:
    images = [f"{stack.registry.host}/shop/frontend", f"{stack.registry.host}/shop/backend"]
    envs = [{"name": n, "git": {"url": "http://127.0.0.1:1/m.git"}, "images": [{"image": i} for i in images]}
            for n in ("staging", "production")]
    config = parse_config({"state_dir": str(tmp_path), "redis": {"url": stack.redis.url}, "environments": envs,
                           "repos": [{"name": "shop", "url": "http://127.0.0.1:1/shop.git",
                                      "images": [{"name": i, "context": i.rsplit("/", 1)[1]} for i in images]}]})
    store = EventStore(redis_client)
    queued: list[tuple[str, ...]] = []
    pipeline = Pipeline(config, store, lambda *msg: queued.append(msg))
    calls: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(bump_module, "bump", lambda env, updates, ids, state: calls.append(
        (env.name, sorted(u.image for u in updates))) or BumpResult("c0ffee" * 6 + "abcd", (), ()))
    push = GitPushed(repo="acme/shop", ref="refs/tags/1.0.0", before="0" * 40, after="a" * 40, changed_paths=(),
                     pusher="dev", delivery_id="d", source="gitea")
    release = EventRecord(id=new_event_id(), source="gitea", receiver="default", kind=push.kind,
                          event=event_to_dict(push))
    store.save(release)

    pipeline.releases.open(release.id, images)  # what build() does before building
    for image in images:  # the registry's notifications arrive while the build runs
        notified = image_event(store, image, "1.0.0")
        assert pipeline.process_event(notified).startswith("held for release")
    assert [m for m in queued if m[1] == "bump_env"] == [], "nothing is bumped while the release builds"
    pipeline.close_release(release.id)  # the build ended

    bumps = sorted({m[2] for m in queued if m[1] == "bump_env"})
    assert bumps == ["production", "staging"]
    for env in bumps:
        pipeline.bump(env)
    assert sorted(calls) == [("production", sorted(images)), ("staging", sorted(images))], \
        "one commit per environment, listing every image of the release"
    held = [r for r in store.list() if r.kind == "image_pushed"]
    assert {r.correlation_id for r in held} == {release.id}, "the notifications are part of the release"


def test_an_overdue_release_is_closed_late_but_not_lost(stack, redis_client, tmp_path) -> None:
    image = f"{stack.registry.host}/shop/frontend"
    config = parse_config({"state_dir": str(tmp_path), "redis": {"url": stack.redis.url}, "environments": [
        {"name": "staging", "git": {"url": "http://127.0.0.1:1/m.git"}, "images": [{"image": image}]}]})
    store = EventStore(redis_client)
    queued: list[tuple[str, ...]] = []
    pipeline = Pipeline(config, store, lambda *msg: queued.append(msg))
    pipeline.releases.open("r1", [image])
    pipeline.process_event(image_event(store, image, "2.0.0"))
    redis_client.zadd("shipline:releases:open", {"r1": 1})  # its lease passed: the build never reported back

    assert pipeline.close_overdue_releases() == ["r1"]
    assert [m[:3] for m in queued if m[1] == "bump_env"] == [("bump", "bump_env", "staging")]


def manifests_remote(tmp_path: Path) -> tuple[str, Path]:
    bare, work = tmp_path / "manifests.git", tmp_path / "work"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    subprocess.run(["git", "clone", "-q", str(bare), str(work)], check=True, capture_output=True)
    return str(bare), work


def commit(work: Path, text: str, message: str) -> str:
    (work / "deploy").mkdir(exist_ok=True)
    (work / "deploy" / "values.yaml").write_text(text)
    for args in (["add", "-A"], ["commit", "-qm", message], ["push", "-q", "origin", "HEAD:main"]):
        subprocess.run([*GIT, "-C", str(work), *args], check=True, capture_output=True)
    return subprocess.run(["git", "-C", str(work), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


def log(url: str) -> list[str]:
    return subprocess.run(["git", "--git-dir", url, "log", "--format=%H %s", "main"], capture_output=True, text=True,
                          check=True).stdout.splitlines()


def test_a_degraded_release_is_reverted_by_a_commit_of_its_own_and_its_tag_held_back(
        stack, redis_client, tmp_path) -> None:
    url, work = manifests_remote(tmp_path)
    commit(work, "image: web:1.0.0\n", "first")
    bad = commit(work, "image: web:1.1.0\n",
                 "Bump staging: web 1.1.0\n\nShipline-Event: e1\nShipline-Environment: staging\nShipline-Bot: true")
    image = "registry.example.com/shop/web"
    config = parse_config({"state_dir": str(tmp_path / "s"), "redis": {"url": stack.redis.url}, "environments": [
        {"name": "staging", "git": {"url": url}, "images": [{"image": image}], "rollback": "auto"}]})
    store = EventStore(redis_client)
    queued: list[tuple[str, ...]] = []
    pipeline = Pipeline(config, store, lambda *msg: queued.append(msg))
    env = config.environment("staging")
    bumped = EventRecord(id="e1", source="registry", receiver="default", kind="image_pushed", event=event_to_dict(
        ImagePushed(registry="registry.example.com", repository="shop/web", tag="1.1.0", digest="", delivery_id="",
                    source="registry")))
    rollback.remember_bump(redis_client, env, bad, [bumped], 3600)
    degraded = SyncResult(bad, (ObjRef("apps/v1", "Deployment", "s", "web"),), (), 0, (),
                          Health("Degraded", "not healthy after 5s: 0/1 available"), (), 5.0)

    revert = rollback.after_degraded(pipeline, env, degraded)

    history = log(url)
    assert len(history) == 3 and history[0].startswith(revert)
    body = subprocess.run(["git", "--git-dir", url, "log", "-1", "--format=%B", "main"], capture_output=True,
                          text=True, check=True).stdout
    assert f"Shipline-Rollback-Of: {bad}" in body and "Shipline-Bot: true" in body
    shown = subprocess.run(["git", "--git-dir", url, "show", "main:deploy/values.yaml"], capture_output=True,
                           text=True, check=True).stdout
    assert shown == "image: web:1.0.0\n"
    assert ("sync", "sync_env", "staging", "1") in queued, "the revert is synced"
    assert rollback.after_degraded(pipeline, env, degraded) is None and len(log(url)) == 3, "once per revision"
    again = store.get(image_event(store, image, "1.1.0")) or bumped
    keep, skipped = rollback.held_back(redis_client, env, [again])
    assert keep == [] and "held back" in skipped[0][1]
    newer = store.get(image_event(store, image, "1.2.0"))
    assert rollback.held_back(redis_client, env, [newer])[0] == [newer], "a newer tag lifts the hold"


def test_a_commit_shipline_did_not_make_is_never_reverted(stack, redis_client, tmp_path) -> None:
    url, work = manifests_remote(tmp_path)
    commit(work, "a: 1\n", "first")
    theirs = commit(work, "a: 2\n", "a person's change")
    config = parse_config({"state_dir": str(tmp_path / "s"), "redis": {"url": stack.redis.url}, "environments": [
        {"name": "staging", "git": {"url": url}, "rollback": "auto"}]})
    pipeline = Pipeline(config, EventStore(redis_client), lambda *msg: None)
    env = config.environment("staging")
    degraded = SyncResult(theirs, (ObjRef("v1", "ConfigMap", "s", "a"),), (), 0, (), Health("Degraded", "x"), (), 1.0)

    assert rollback.after_degraded(pipeline, env, degraded) is None
    with pytest.raises(PermanentError, match="not a commit Shipline made"):
        rollback.by_hand(pipeline, env, to=subprocess.run(["git", "--git-dir", url, "rev-parse", "main~1"],
                                                          capture_output=True, text=True).stdout.strip())
    assert len(log(url)) == 2, "nothing was reverted"
    status = redis_client.get("shipline:environment-rollback:staging")
    assert status and "not a bump Shipline made" in status
