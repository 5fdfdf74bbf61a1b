"""Polling against the real registry and a real Git remote: a change a webhook never brought
becomes the same event (source ``poll``), once, and dedupes against the webhook for it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

from handlers.events import GitPushed, ImagePushed, event_to_dict
from service.config import parse_config
from service.pipeline import Pipeline
from service.polling import Poller
from service.store import EventRecord, EventStore, new_event_id
from tests.fixtures_stack import build_and_push

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]


def due_again(redis_client) -> None:  # noqa: ANN001
    for key in redis_client.keys("shipline:poll:due:*"):
        redis_client.delete(key)


def test_a_new_tag_no_webhook_announced_is_found_once(stack, redis_client, tmp_path: Path) -> None:
    image = f"{stack.registry.host}/poll/app"
    config = parse_config({"state_dir": str(tmp_path), "redis": {"url": stack.redis.url},
                           "registries": [{"host": stack.registry.host, "insecure": True}],
                           "environments": [{"name": "staging", "git": {"url": "http://127.0.0.1:1/m.git"},
                                             "images": [{"image": image, "poll_interval": 30}]}]})
    store = EventStore(redis_client)
    queued: list[tuple[str, ...]] = []
    pipeline = Pipeline(config, store, lambda *msg: queued.append(msg))
    poller = Poller(config, redis_client, pipeline.submit)
    build_and_push(stack, tmp_path, f"{image}:1.0.0", "echo one > /v")

    assert poller.tick() == [], "the first look takes what exists as known"
    assert poller.tick() == [], "not due again within its interval"
    build_and_push(stack, tmp_path, f"{image}:1.1.0", "echo two > /v")
    due_again(redis_client)
    (made,) = poller.tick()

    record = store.get(made)
    digest = httpx.head(f"{stack.registry.url}/v2/poll/app/manifests/1.1.0", headers={
        "Accept": "application/vnd.oci.image.manifest.v1+json,application/vnd.docker.distribution.manifest.v2+json"
    }).headers["Docker-Content-Digest"]
    assert (record.source, record.event["tag"], record.event["digest"]) == ("poll", "1.1.0", digest)
    assert [m[1] for m in queued] == ["process_event"]
    due_again(redis_client)
    assert poller.tick() == []
    late_webhook = ImagePushed(registry=stack.registry.host, repository="poll/app", tag="1.1.0", digest=digest,
                               delivery_id="abc", source="registry")
    rec = EventRecord(id=new_event_id(), source="registry", receiver="default", kind=late_webhook.kind,
                      event=event_to_dict(late_webhook))
    assert pipeline.submit(rec, f"sem:{config.router.semantic_key(late_webhook)}") == made, \
        "the registry's notification, arriving late, is a duplicate of the poll's event"


def test_a_push_no_webhook_announced_is_found_with_its_before_and_after(stack, redis_client, tmp_path: Path) -> None:
    bare, work = tmp_path / "app.git", tmp_path / "work"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    subprocess.run(["git", "clone", "-q", str(bare), str(work)], check=True, capture_output=True)

    def commit(text: str) -> str:
        (work / "f").write_text(text)
        for args in (["add", "-A"], ["commit", "-qm", text], ["push", "-q", "origin", "HEAD:main"]):
            subprocess.run([*GIT, "-C", str(work), *args], check=True, capture_output=True)
        return subprocess.run(["git", "-C", str(work), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()

    first = commit("one")
    config = parse_config({"state_dir": str(tmp_path / "s"), "redis": {"url": stack.redis.url},
                           "repos": [{"name": "app", "url": str(bare), "match": ["acme/app"], "poll_interval": 30,
                                      "images": [{"name": f"{stack.registry.host}/acme/app"}]}]})
    store = EventStore(redis_client)
    pipeline = Pipeline(config, store, lambda *msg: None)
    poller = Poller(config, redis_client, pipeline.submit)
    assert poller.tick() == []
    second = commit("two")
    due_again(redis_client)

    (made,) = poller.tick()

    event = store.get(made).event
    assert (event["ref"], event["before"], event["after"], event["source"]) == ("refs/heads/main", first, second,
                                                                                 "poll")
    webhook = GitPushed(repo="acme/app", ref="refs/heads/main", before=first, after=second, changed_paths=("f",),
                        pusher="dev", delivery_id="d1", source="gitea", clone_url="http://forge.example/acme/app.git")
    assert config.router.semantic_key(webhook) == config.router.semantic_key(_git(event)), \
        "a webhook for the same change, however it spells the repo, has the same key"


def _git(data: dict) -> GitPushed:
    fields = {k: v for k, v in data.items() if k != "kind"}
    fields["changed_paths"] = tuple(fields["changed_paths"])
    return GitPushed(**fields)
