"""Exactly-once effect under load, through the real receiver and two real worker processes.

- 50 image pushes for 50 images of one environment, delivered at once: every tag lands in the
  one manifests branch, each event in exactly one commit, none lost.
- 1,000 deliveries, 20 % of them duplicates (same delivery id) or redeliveries (new delivery id,
  same content), sent concurrently. What is feasible in about a minute on 2 cores: 780 pushes to
  the manifests repo (each routes to a sync; syncs coalesce), 19 image pushes (each a bump: commit
  and sync) and one real app push (build, bump, sync). Each distinct event must be recorded once,
  reach a final state and land once (commits, tags, applies counted where they land).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.chaos import evidence
from tests.chaos.scenario import scenario
from tests.chaos.senders import Delivery, delivery_id, fake_sha, post
from tests.chaos.world import World, fake_digest, wait_for

LOAD_SOURCES = {"sent": "deliveries posted by 8-25 sender threads (duplicates and redeliveries included)"}


@pytest.fixture(scope="module")
def two_workers(world: World) -> Iterator[World]:
    world.start_worker("worker2")
    world.wait_worker_ready("worker2")
    yield world
    world.daemon("worker2").stop()


def send_keyed(world: World, deliveries: list[tuple[str, Delivery]], ledger: evidence.Ledger,
               threads: int) -> dict[str, set[str]]:
    """key → the event ids answered for its deliveries (a distinct event must get exactly one)."""
    out: dict[str, set[str]] = {}

    def one(item: tuple[str, Delivery], client: httpx.Client) -> None:
        key, delivery = item
        ledger.sent(delivery_id(delivery))
        status, answer = post(world.url, delivery, ledger=ledger, client=client)
        event_id = answer.get("event_id") or answer.get("duplicate")
        out.setdefault(key, set()).update([event_id] if 200 <= status < 300 and event_id else [])

    with httpx.Client(timeout=15, limits=httpx.Limits(max_connections=threads)) as client, \
            ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(lambda item: one(item, client), deliveries))
    return out


def test_fifty_concurrent_image_bumps_into_one_branch_all_land_once(two_workers: World) -> None:
    world = two_workers
    with scenario(world, "50 concurrent image bumps, one branch") as run:
        deliveries = [(image, world.registry_push("1.1.0", fake_digest(image), image)) for image in world.fleet_images]
        ids = send_keyed(world, deliveries, run.ledger, threads=25)
        row = run.conclude(timeout=180, sources=LOAD_SOURCES, note="2 workers")
    pairs = evidence.commits_per_event(world.deploy_bare)
    events = {next(iter(v)) for v in ids.values() if len(v) == 1}
    assert all(len(v) == 1 for v in ids.values()), ids
    assert (row.accepted, row.lost, row.duplicated) == (50, 0, 0), row
    assert all(pairs[(e, "fleet")] == 1 for e in events), {e: pairs[(e, "fleet")] for e in events}
    assert world.fleet_versions() == ["1.1.0"] * 50


def test_a_thousand_deliveries_with_duplicates_yield_one_effect_each(two_workers: World) -> None:
    world = two_workers
    rng = random.Random(9)  # noqa: S311 - a reproducible mix, not crypto
    with scenario(world, "1,000 deliveries, 20% duplicates/redeliveries") as run:
        app_sha = world.push_app()
        run.ledger.pushed(app_sha)
        wait_for(lambda: world.record_for_sha(app_sha, run.baseline.started), timeout=30, what="the app push")
        distinct: dict[str, Delivery] = {f"sync:{sha}": world.gitea_push(world.deploy_name, sha)
                                         for sha in (fake_sha() for _ in range(780))}
        for image in world.fleet_images[:19]:
            distinct[f"image:{image}"] = world.registry_push("1.2.0", fake_digest(image + "2"), image)
        distinct[f"app:{app_sha}"] = world.gitea_push(world.app_name, app_sha)
        extra: list[tuple[str, Delivery]] = []
        for key in rng.sample(sorted(distinct), 200):
            path, body, headers = distinct[key]
            if key.startswith("image:"):  # a registry redelivery: the same notification again
                extra.append((key, distinct[key]))
            elif rng.random() < 0.5:
                extra.append((key, distinct[key]))  # the same delivery again
            else:  # a redelivery: same content, new delivery id (the signature covers the body only)
                extra.append((key, (path, body, {**headers, "X-Gitea-Delivery": str(uuid.uuid4())})))
        mix = list(distinct.items()) + extra
        rng.shuffle(mix)
        ids = send_keyed(world, mix, run.ledger, threads=8)
        row = run.conclude(timeout=300, sources=LOAD_SOURCES,
                           note=f"{len(distinct)} distinct: 1 build, 19 bumps, 780 syncs; 2 workers")
    split = [k for k, v in ids.items() if len(v) != 1]  # a distinct event recorded twice (or never)
    assert len(mix) == 1000 and run.ledger.deliveries == 1001  # + the real app push
    assert not split, split
    assert (row.accepted, row.lost, row.duplicated) == (800, 0, 0), row
    assert run.batch is not None and sum(len(f) for f in run.batch.follow_ups.values()) == 1  # one image built
