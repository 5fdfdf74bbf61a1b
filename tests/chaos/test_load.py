"""Exactly-once effect under load, through the real receiver and two real worker processes.

- 50 image pushes for 50 images of one environment, delivered at once: every tag lands in the
  one manifests branch, each event in exactly one commit, none lost.
- 1,000 deliveries, 20 % of them duplicates (same delivery id) or redeliveries (new delivery id,
  same content), sent concurrently. What is feasible in about a minute on 2 cores: 780 pushes to
  the manifests repo (each routes to a sync; syncs coalesce), 19 image pushes (each a bump: commit
  and sync) and one real app push (build, bump, sync). Each distinct event must be recorded once
  and yield one effect: one sync step, at most one commit carrying its trailer, one build.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.chaos.results import record
from tests.chaos.test_kill_worker import push_event
from tests.chaos.world import World, fake_digest, post, wait_for

Delivery = tuple[str, bytes, dict[str, str]]  # (path, body, headers)


@pytest.fixture(scope="module")
def two_workers(world: World) -> Iterator[World]:
    world.start_worker("worker2")
    world.wait_worker_ready("worker2")
    yield world
    world.daemon("worker2").stop()


def send_all(world: World, deliveries: list[tuple[str, Delivery]], threads: int) -> dict[str, list[tuple]]:
    """key → [(status, answer)] for every delivery, retried like a sender until it is not 5xx."""
    out: dict[str, list[tuple]] = {}

    def one(item: tuple[str, Delivery], client: httpx.Client) -> None:
        key, (path, body, headers) = item
        _, status, answer = post(f"{world.url}{path}", body, headers, client=client)
        out.setdefault(key, []).append((status, answer))

    with httpx.Client(timeout=15, limits=httpx.Limits(max_connections=threads)) as client, \
            ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(lambda item: one(item, client), deliveries))
    return out


def event_ids(answers: list[tuple]) -> set[str]:
    return {a.get("event_id") or a.get("duplicate") for s, a in answers if 200 <= s < 300}


def test_fifty_concurrent_image_bumps_into_one_branch_all_land_once(two_workers: World) -> None:
    world = two_workers
    deliveries = [(image, ("/hooks/registry", *world.registry_push("1.1.0", fake_digest(image), image)))
                  for image in world.fleet_images]
    answers = send_all(world, deliveries, threads=25)
    ids = {image: event_ids(a) for image, a in answers.items()}
    assert all(len(v) == 1 for v in ids.values()), ids
    events = [next(iter(v)) for v in ids.values()]
    wait_for(lambda: all(world.steps(e, "sync") for e in events), timeout=120, what="50 bumps synced",
             log=world.daemon("worker").log_file)
    time.sleep(2)
    commits = {e: world.commits_for(e) for e in events}
    landed = world.fleet_versions()
    lost = sum(1 for n in commits.values() if n == 0) + sum(1 for v in landed if v != "1.1.0")
    dup = sum(n - 1 for n in commits.values() if n > 1)
    record("50 concurrent image bumps, one branch", sent=50, accepted=len(events),
           processed=sum(1 for n in commits.values() if n >= 1), lost=lost, duplicated=dup,
           note=f"{len(set(world.bump_commits()))} bump commits in the branch so far, 2 workers")
    assert landed == ["1.1.0"] * 50 and set(commits.values()) == {1}, (landed, commits)


def test_a_thousand_deliveries_with_duplicates_yield_one_effect_each(two_workers: World) -> None:
    world = two_workers
    rng = random.Random(9)  # noqa: S311 - a reproducible mix, not crypto
    app_sha = world.push_app()
    app_event = push_event(world, app_sha)
    distinct: dict[str, Delivery] = {}
    for _ in range(780):
        sha = uuid.uuid4().hex + uuid.uuid4().hex[:8]
        distinct[f"sync:{sha}"] = ("/hooks/gitea", *world.gitea_push(world.deploy_name, sha))
    for image in world.fleet_images[:19]:
        distinct[f"image:{image}"] = ("/hooks/registry", *world.registry_push("1.2.0", fake_digest(image + "2"), image))
    distinct[f"app:{app_sha}"] = ("/hooks/gitea", *world.gitea_push(world.app_name, app_sha))
    extra: list[tuple[str, Delivery]] = []
    for key in rng.sample(sorted(distinct), 200):
        path, body, headers = distinct[key]
        if rng.random() < 0.5 or key.startswith("image:"):
            extra.append((key, distinct[key]))  # the same delivery again
        else:  # a redelivery: same content, new delivery id (and signature over the same body)
            extra.append((key, (path, body, {**headers, "X-Gitea-Delivery": str(uuid.uuid4())})))
    for key in [k for k, _ in extra if k.startswith("image:")][:10]:  # registry redeliveries: new event id
        image = key.removeprefix("image:")
        extra.append((key, ("/hooks/registry", *world.registry_push("1.2.0", fake_digest(image + "2"), image))))
        extra.pop(next(i for i, (k, _) in enumerate(extra) if k == key))
    mix = list(distinct.items()) + extra
    rng.shuffle(mix)
    began = time.monotonic()
    answers = send_all(world, mix, threads=8)
    ingest_seconds = time.monotonic() - began
    ids = {key: event_ids(a) for key, a in answers.items()}
    split = [k for k, v in ids.items() if len(v) != 1]  # a distinct event recorded twice
    events = {key: next(iter(v)) for key, v in ids.items() if len(v) == 1}
    events[f"app:{app_sha}"] = app_event
    wait_for(lambda: all(world.steps(e, "sync") for e in events.values()), timeout=180,
             what="every distinct event synced", log=world.daemon("worker").log_file)
    time.sleep(3)
    syncs = {k: world.syncs(e) for k, e in events.items()}  # (environments, extra syncs)
    commits = {k: world.commits_for(e) for k, e in events.items() if k.startswith("image:")}
    builds = len([s for s in world.steps(app_event, "build") if s["status"] != "running"])
    accepted = sum(1 for a in answers.values() for s, _ in a if 200 <= s < 300)
    lost = sum(1 for n, _ in syncs.values() if n == 0) + sum(1 for n in commits.values() if n == 0)
    dup = (len(split) + sum(x for _, x in syncs.values()) + sum(n - 1 for n in commits.values() if n > 1)
           + max(0, builds - 1))
    record("1,000 deliveries, 20% duplicates/redeliveries", sent=len(mix), accepted=accepted,
           processed=sum(1 for n, _ in syncs.values() if n >= 1), lost=lost, duplicated=dup,
           note=f"{len(distinct)} distinct; ingested in {ingest_seconds:.0f}s; 1 build, 19 bumps, 780 syncs")
    assert len(mix) == 1000 and accepted == 1000
    assert not split and len(events) == 800
    # a manifests push syncs both environments of that branch; an image bump its own one
    assert {x for _, x in syncs.values()} == {0} and lost == 0, syncs
    assert set(commits.values()) == {1} and builds == 1, (commits, builds)
