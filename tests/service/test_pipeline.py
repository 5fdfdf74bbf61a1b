"""The pipeline's coordination on real Redis, git and registry: a newer push supersedes a
running build of the same branch, and only the newer one is built to completion."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from handlers.events import GitPushed, event_to_dict
from service.config import parse_config
from service.pipeline import Pipeline
from service.store import EventRecord, EventStore, new_event_id

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]


def git(work: Path, *args: str) -> str:
    return subprocess.run([*GIT, "-C", str(work), *args], check=True, capture_output=True, text=True).stdout.strip()


def record(store: EventStore, url: str, before: str, after: str) -> str:
    event = GitPushed(repo="local/super", ref="refs/heads/main", before=before, after=after, changed_paths=(),
                      pusher="t", delivery_id="", source="gitea", clone_url=url)
    rec = EventRecord(id=new_event_id(), source="gitea", receiver="default", kind=event.kind,
                      event=event_to_dict(event))
    store.save(rec)
    return rec.id


def test_newer_push_supersedes_the_running_build(stack, redis_client, tmp_path: Path) -> None:
    url = stack.git.create_repo("super")
    work = tmp_path / "w"
    subprocess.run(["git", "clone", "-q", url, str(work)], check=True, capture_output=True)
    (work / "app").mkdir()
    (work / "app" / "Dockerfile").write_text(f"FROM {stack.base_image}\nCOPY v /v\nRUN sleep 4\n")
    (work / "app" / "v").write_text("1\n")
    git(work, "add", "-A")
    git(work, "commit", "-qm", "one")
    git(work, "push", "-q", "origin", "HEAD:main")
    first = git(work, "rev-parse", "HEAD")
    image = f"{stack.registry.host}/super/app"
    config = parse_config({
        "state_dir": str(stack.state_dir / "shipline"), "redis": {"url": stack.redis.url},
        "registries": [{"host": stack.registry.host, "insecure": True}],
        "repos": [{"name": "super", "url": url, "images": [{"name": image, "context": "app",
                                                            "tags": ["{short_sha}"]}]}],
    })
    store = EventStore(redis_client)
    queued: list[tuple[str, ...]] = []
    pipeline = Pipeline(config, store, lambda *msg: queued.append(msg))

    older = record(store, url, "0" * 40, first)
    pipeline.process_event(older)
    outcome: dict[str, object] = {}
    runner = threading.Thread(target=lambda: outcome.update(report=pipeline.build(older, "super")))
    runner.start()
    deadline = time.monotonic() + 60
    while not any(s["stage"] == "build" and s["status"] == "running" for s in store.get(older).steps):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(1.5)  # buildah is inside `RUN sleep 4` now

    (work / "app" / "v").write_text("2\n")
    git(work, "commit", "-qam", "two")
    git(work, "push", "-q", "origin", "HEAD:main")
    second = git(work, "rev-parse", "HEAD")
    newer = record(store, url, first, second)
    pipeline.process_event(newer)
    runner.join(timeout=60)

    assert store.get(older).status == "superseded", store.get(older).outcome
    assert [i.status for i in outcome["report"].images] == ["superseded"]
    pipeline.build(newer, "super")
    assert store.get(newer).status == "done", store.get(newer).outcome
    tags = httpx.get(f"{stack.registry.url}/v2/super/app/tags/list").json()["tags"]
    assert tags == [second[:7]]
    built = [r for r in store.list() if r.kind == "image_pushed"]  # the built image, part of the push's release
    assert [(r.event["tag"], r.correlation_id) for r in built] == [(second[:7], newer)]


def test_a_following_environment_gets_the_images_once_its_leader_is_healthy(stack, redis_client, tmp_path) -> None:
    image = f"{stack.registry.host}/shop/web"
    env = {"git": {"url": "http://127.0.0.1:1/m.git"}, "images": [{"image": image}]}
    config = parse_config({"state_dir": str(tmp_path), "redis": {"url": stack.redis.url}, "environments": [
        {"name": "staging", **env}, {"name": "production", "trigger": "follow", "follows": "staging", **env},
        {"name": "qa", **env}]})
    store = EventStore(redis_client)
    queued: list[tuple[str, ...]] = []
    pipeline = Pipeline(config, store, lambda *msg: queued.append(msg))
    result = {"health": "Healthy", "images": [f"{image}:1.4.0", "other.example/x:9"]}
    created = pipeline.promote_followers(config.environment("staging"), result["images"])
    assert len(created) == 1
    record = store.get(created[0])
    assert record.event_type == "promote:production"
    assert (record.event["repository"], record.event["tag"]) == ("shop/web", "1.4.0")
    assert pipeline.promote_followers(config.environment("staging"), result["images"]) == []  # once per tag
    pipeline.process_event(created[0])
    assert [m[:3] for m in queued if m[1] == "bump_env"] == [("bump", "bump_env", "production")]


def staging_pipeline(stack, redis_client, tmp_path) -> tuple[Pipeline, list[tuple[str, ...]]]:  # noqa: ANN001
    """A pipeline with one environment, ``staging``, and the list its messages are queued to."""
    config = parse_config({"state_dir": str(tmp_path), "redis": {"url": stack.redis.url},
                           "environments": [{"name": "staging", "git": {"url": "http://127.0.0.1:1/m.git"}}]})
    queued: list[tuple[str, ...]] = []
    return Pipeline(config, EventStore(redis_client), lambda *msg: queued.append(msg)), queued


def stub_syncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each sync's work replaced by a Healthy result at ``c0ffee``; the environments it was asked for."""
    from handlers.sync.health import HEALTHY
    from handlers.sync.reconcile import SyncResult

    synced: list[str] = []
    monkeypatch.setattr(Pipeline, "_sync_now", lambda self, env: synced.append(env.name) or
                        SyncResult("c0ffee", (), (), 0, (), HEALTHY, (), 0.1))
    return synced


def test_a_burst_of_sync_requests_coalesces_into_one_sync(stack, redis_client, tmp_path, monkeypatch) -> None:
    pipeline, queued = staging_pipeline(stack, redis_client, tmp_path)
    synced = stub_syncs(monkeypatch)
    for _ in range(5):
        pipeline.request_sync("staging")
    results = [pipeline.sync(m[2], int(m[3])) for m in queued if m[1] == "sync_env"]
    assert synced == ["staging"]
    assert sum(1 for r in results if r is None) == 4
    pipeline.request_sync("staging")  # a later change is synced again
    pipeline.sync("staging", int(queued[-1][3]))
    assert synced == ["staging", "staging"]


def test_a_job_that_gets_the_lock_after_a_sync_covered_it_does_not_sync_again(stack, redis_client, tmp_path,
                                                                             monkeypatch) -> None:
    """The holder may cover a waiting job and release between the waiter's last look and its
    acquire: the waiter checks again under the lock. Here the look before the lock is skipped."""
    from service.pipeline import leased_lock

    pipeline, queued = staging_pipeline(stack, redis_client, tmp_path)
    synced = stub_syncs(monkeypatch)
    pipeline.request_sync("staging")
    pipeline.request_sync("staging")
    first, second = (int(m[3]) for m in queued if m[1] == "sync_env")
    assert pipeline.sync("staging", second) is not None  # covers the first request too
    monkeypatch.setattr(Pipeline, "lock", lambda self, name, unless=None: leased_lock(self.r, f"shipline:lock:{name}"))
    assert pipeline.sync("staging", first) is None
    assert synced == ["staging"]


def test_the_periodic_reconcile_asks_once_per_interval_across_workers_in_one_round_trip(
        stack, redis_client, tmp_path, monkeypatch) -> None:
    import redis

    envs = [{"name": f"env-{i}", "git": {"url": "http://127.0.0.1:1/m.git"}, "reconcile_interval": 60}
            for i in range(50)]
    config = parse_config({"state_dir": str(tmp_path), "redis": {"url": stack.redis.url}, "environments": envs})
    queued: list[tuple[str, ...]] = []
    workers = [Pipeline(config, EventStore(redis_client), lambda *msg: queued.append(msg)) for _ in range(2)]
    assert workers[0].request_due_reconciles() == [f"env-{i}" for i in range(50)]
    round_trips: list[str] = []
    real_command, real_execute = redis.Redis.execute_command, redis.client.Pipeline.execute
    monkeypatch.setattr(redis.Redis, "execute_command",
                        lambda self, *a, **k: round_trips.append(str(a[0])) or real_command(self, *a, **k))
    monkeypatch.setattr(redis.client.Pipeline, "execute",
                        lambda self, *a, **k: round_trips.append("pipeline") or real_execute(self, *a, **k))
    assert workers[1].request_due_reconciles() == [], "the other worker's tick within the interval asks for none"
    assert workers[0].request_due_reconciles() == []
    assert round_trips == ["pipeline", "pipeline"], "a tick is one round trip, whatever the number of environments"
    assert sorted(m[2] for m in queued if m[1] == "sync_env") == sorted(f"env-{i}" for i in range(50))
    redis_client.delete("shipline:reconcile:env-7")  # its interval passed
    assert workers[1].request_due_reconciles() == ["env-7"]


def test_every_drift_seen_after_the_last_sync_gets_a_sync(stack, redis_client, tmp_path, monkeypatch) -> None:
    """Two edits a second apart, the first corrected in between: both are synced (none is lost to a
    time window); a sighting while a drift sync is still queued adds nothing."""
    pipeline, queued = staging_pipeline(stack, redis_client, tmp_path)
    synced = stub_syncs(monkeypatch)

    assert pipeline.drift_seen("staging", "Deployment/a changed")
    assert not pipeline.drift_seen("staging", "Deployment/a changed"), "its sync is still queued"
    pipeline.sync("staging", int(queued[-1][3]))
    assert pipeline.drift_seen("staging", "Deployment/b changed"), "a later edit, right after the correction"
    pipeline.sync("staging", int(queued[-1][3]))

    assert synced == ["staging", "staging"]
    assert [m[1] for m in queued] == ["sync_env", "sync_env"]


def staging_of(stack, redis_client, tmp_path: Path, images: list[str]) -> tuple[Pipeline, list[tuple[str, ...]]]:
    """A pipeline with one environment, ``staging``, taking ``images``; and the messages it enqueues."""
    config = parse_config({"state_dir": str(tmp_path), "redis": {"url": stack.redis.url}, "environments": [
        {"name": "staging", "git": {"url": "http://127.0.0.1:1/m.git"}, "images": [{"image": i} for i in images]}]})
    queued: list[tuple[str, ...]] = []
    return Pipeline(config, EventStore(redis_client), lambda *msg: queued.append(msg)), queued


def image_record(stack, store: EventStore, image: str, tag: str = "1.0.0") -> str:
    """A registry notification of ``image:tag``, recorded (not routed); its id."""
    from handlers.events import ImagePushed

    event = ImagePushed(registry=stack.registry.host, repository=image.split("/", 1)[1], tag=tag,
                        digest="", delivery_id="", source="registry")
    rec = EventRecord(id=new_event_id(), source="registry", receiver="default", kind=event.kind,
                      event=event_to_dict(event))
    store.save(rec)
    return rec.id


def image_pushed(stack, pipeline: Pipeline, image: str) -> None:
    """A registry notification of ``image:1.0.0``, recorded and routed (it asks for a bump)."""
    pipeline.process_event(image_record(stack, pipeline.store, image))


def test_image_events_waiting_for_a_writer_go_into_one_commit(stack, redis_client, tmp_path, monkeypatch) -> None:
    from handlers import bump as bump_module
    from handlers.bump import BumpResult

    images = [f"{stack.registry.host}/shop/s{i}" for i in range(5)]
    pipeline, queued = staging_of(stack, redis_client, tmp_path, images)
    calls: list[list[str]] = []
    monkeypatch.setattr(bump_module, "bump", lambda env, updates, ids, state: calls.append(
        [u.image for u in updates]) or BumpResult("c0ffee" * 6 + "abcd", (), ()))
    for image in images:
        image_pushed(stack, pipeline, image)
    bumps = [m for m in queued if m[1] == "bump_env"]
    assert len(bumps) == 5
    done = [pipeline.bump(message[2], int(message[3])) for message in bumps]
    assert len(calls) == 1 and sorted(calls[0]) == sorted(images)
    assert [len(d) for d in done] == [1, 0, 0, 0, 0], "the later jobs were covered: they end without the lock"


def test_jobs_covered_while_they_wait_for_the_writer_end_without_the_lock(stack, redis_client, tmp_path,
                                                                          monkeypatch) -> None:
    """Bump jobs numbered while a bump holds the branch's lock: the holder's next round commits
    their events, and the waiting jobs end as soon as that is done, none taking the lock in turn."""
    from handlers import bump as bump_module
    from handlers.bump import BumpResult

    images = [f"{stack.registry.host}/shop/s{i}" for i in range(6)]
    pipeline, queued = staging_of(stack, redis_client, tmp_path, images)
    first_round, calls = threading.Event(), []

    def slow_bump(env, updates, ids, state):  # noqa: ANN001, ANN202 - the handler's signature
        calls.append(sorted(u.image for u in updates))
        first_round.set()
        time.sleep(1.0)  # a commit and push, while the other jobs arrive
        return BumpResult("c0ffee" * 6 + "abcd", (), ())

    monkeypatch.setattr(bump_module, "bump", slow_bump)
    import contextlib

    from service import pipeline as pipeline_module

    taken: list[str] = []
    real_lock = pipeline_module.leased_lock

    @contextlib.contextmanager
    def counted(r, key, **options):  # noqa: ANN001, ANN202
        with real_lock(r, key, **options) as lock:
            if lock is not None:
                taken.append(threading.current_thread().name)
            yield lock

    monkeypatch.setattr(pipeline_module, "leased_lock", counted)

    def arrive(image: str) -> tuple[str, ...]:
        image_pushed(stack, pipeline, image)
        return queued[-1]

    holder = threading.Thread(target=pipeline.bump, args=("staging", int(arrive(images[0])[3])), name="holder")
    holder.start()
    assert first_round.wait(10)
    later = [arrive(image) for image in images[1:]]
    ended: list[float] = []
    began = time.monotonic()

    def wait(message: tuple[str, ...]) -> None:
        assert pipeline.bump(message[2], int(message[3])) == ()
        ended.append(time.monotonic() - began)

    waiters = [threading.Thread(target=wait, args=(m,)) for m in later]
    for t in waiters:
        t.start()
    for t in [holder, *waiters]:
        t.join(30)
    assert calls == [[images[0]], sorted(images[1:])], "the holder's second round took every later event"
    assert len(ended) == 5 and max(ended) < 3.0, ended
    assert taken == ["holder"], "a covered job took the lock to find nothing to do"
    assert not redis_client.exists("shipline:lock:write:http://127.0.0.1:1/m.git:main")


def test_a_waiting_job_ends_with_the_round_that_committed_its_events(stack, redis_client, tmp_path,
                                                                     monkeypatch) -> None:
    """A branch kept busy (events keep arriving while each round commits): a job whose events the
    second round committed ends with that round, not when the holder finally runs dry; else, in a
    backlog, the waiting jobs held most worker threads and routing starved."""
    from handlers import bump as bump_module
    from handlers.bump import BumpResult

    images = [f"{stack.registry.host}/shop/s{i}" for i in range(3)]
    pipeline, queued = staging_of(stack, redis_client, tmp_path, images)
    rounds: list[threading.Event] = [threading.Event() for _ in range(3)]
    calls: list[list[str]] = []
    began = time.monotonic()
    round_ends: list[float] = []

    def slow_bump(env, updates, ids, state):  # noqa: ANN001, ANN202 - the handler's signature
        rounds[len(calls)].set()
        calls.append(sorted(u.image for u in updates))
        time.sleep(1.0)  # a commit and push, while more events arrive
        round_ends.append(time.monotonic() - began)
        return BumpResult("c0ffee" * 6 + "abcd", (), ())

    monkeypatch.setattr(bump_module, "bump", slow_bump)
    image_pushed(stack, pipeline, images[0])
    holder = threading.Thread(target=pipeline.bump, args=("staging", int(queued[-1][3])))
    holder.start()
    assert rounds[0].wait(10)
    image_pushed(stack, pipeline, images[1])
    ended: list[float] = []
    waiter = threading.Thread(target=lambda m: ended.append(pipeline.bump(m[2], int(m[3])) == () and
                                                            time.monotonic() - began), args=(queued[-1],))
    waiter.start()
    assert rounds[1].wait(10)
    image_pushed(stack, pipeline, images[2])  # the branch stays busy: a third round follows
    holder.join(30)
    waiter.join(30)

    assert calls == [[images[0]], [images[1]], [images[2]]]
    assert len(ended) == 1 and ended[0], "the waiting job took the lock"
    assert round_ends[1] <= ended[0] < round_ends[2], (ended, round_ends)


def test_only_the_latest_sync_job_of_an_environment_waits_for_its_lock(stack, redis_client, tmp_path,
                                                                         monkeypatch) -> None:
    """While one sync runs, the jobs asked for after it started need one more sync, not one each:
    the earlier ones end at once (their threads free for other environments) and the latest one
    syncs once the holder is done, reporting every event."""
    from handlers.sync.health import HEALTHY
    from handlers.sync.reconcile import SyncResult

    pipeline, queued = manifests_staging(stack, redis_client, tmp_path)
    store = pipeline.store
    holding, release, synced = threading.Event(), threading.Event(), []

    def slow_first_sync(self, env):  # noqa: ANN001, ANN202 - the method's signature
        synced.append(env.name)
        if len(synced) == 1:
            holding.set()
            assert release.wait(30)
        return SyncResult("c0ffee", (), (), 0, (), HEALTHY, (), 0.1)

    monkeypatch.setattr(Pipeline, "_sync_now", slow_first_sync)
    pipeline.process_event(record(store, MANIFESTS_URL, "1" * 40, "2" * 40))
    holder = threading.Thread(target=pipeline.sync, args=("staging", int(queued[-1][3])))
    holder.start()
    assert holding.wait(10)
    later = [record(store, MANIFESTS_URL, "2" * 40, f"{n}" * 40) for n in (3, 4, 5)]
    for pushed in later:
        pipeline.process_event(pushed)
    ended: dict[int, float] = {}

    def job(number: int) -> None:
        pipeline.sync("staging", number)
        ended[number] = time.monotonic()

    numbers = [int(m[3]) for m in queued if m[1] == "sync_env"][1:]
    waiters = [threading.Thread(target=job, args=(n,)) for n in numbers]
    for waiter in waiters:
        waiter.start()
        time.sleep(0.2)
    time.sleep(0.5)
    assert sorted(ended) == numbers[:-1], "an earlier job still holds its thread"
    release.set()
    holder.join(30)
    for waiter in waiters:
        waiter.join(30)

    assert synced == ["staging", "staging"]
    assert all(store.get(p).status == "done" for p in later)
    assert not redis_client.smembers("shipline:sync:events:staging")


@contextlib.contextmanager
def round_trips() -> Iterator[list[int]]:
    """Every command or pipeline this process sends to Redis while inside, one entry each."""
    import redis.connection

    send, trips = redis.connection.Connection.send_packed_command, []

    def counted(self, command, check_health=True):  # noqa: ANN001, ANN202 - redis-py's signature
        trips.append(1)
        return send(self, command, check_health)

    redis.connection.Connection.send_packed_command = counted
    try:
        yield trips
    finally:
        redis.connection.Connection.send_packed_command = send


def test_a_bump_round_of_thousands_of_events_reads_and_reports_them_a_chunk_per_round_trip(
        stack, redis_client, tmp_path, monkeypatch) -> None:
    """A backlog of image events (the git server down for a while) is one bump round: reading
    and finishing its events one at a time made that round outlast the time between faults."""
    from handlers import bump as bump_module
    from handlers.bump import BumpResult

    image = f"{stack.registry.host}/shop/web"
    pipeline, _ = staging_of(stack, redis_client, tmp_path, [image])
    updates: list[int] = []
    monkeypatch.setattr(bump_module, "bump", lambda env, ups, ids, state: updates.append(len(ups)) or
                        BumpResult("c0ffee" * 6 + "abcd", (), ()))
    waiting = 2000
    ids = [image_record(stack, pipeline.store, image, f"1.0.{n}") for n in range(waiting)]
    redis_client.sadd("shipline:bump:pending:staging", *ids)
    number = redis_client.incr("shipline:bump:req:staging")

    with round_trips() as trips:
        pipeline.bump("staging", number)

    assert updates == [waiting]
    assert len(trips) < 100, f"{len(trips)} round trips for {waiting} events"
    finished = [pipeline.store.get(i) for i in ids]
    assert all(r.status == "done" and [s["stage"] for s in r.steps] == ["bump"] for r in finished)
    assert not redis_client.smembers("shipline:bump:pending:staging")


def test_a_bump_out_of_retries_marks_its_waiting_events_failed(stack, redis_client, tmp_path, monkeypatch) -> None:
    from handlers import bump as bump_module
    from handlers.errors import TransientError

    image = f"{stack.registry.host}/shop/web"
    config = parse_config({"state_dir": str(tmp_path), "redis": {"url": stack.redis.url}, "environments": [
        {"name": "staging", "git": {"url": "http://127.0.0.1:1/m.git"}, "images": [{"image": image}]}]})
    store = EventStore(redis_client)
    pipeline = Pipeline(config, store, lambda *msg: None)

    def unreachable(*args: object) -> None:
        raise TransientError("git push failed for http://127.0.0.1:1/m.git: connection refused")

    monkeypatch.setattr(bump_module, "bump", unreachable)
    event_id = image_record(stack, store, image, "2.0.0")
    pipeline.process_event(event_id)
    with pytest.raises(TransientError) as exc:
        pipeline.bump("staging")
    assert pipeline.give_up("bump_env", ("staging",), exc.value) == [event_id]
    failed = store.get(event_id)
    assert failed.status == "failed" and "connection refused" in failed.outcome
    assert failed.steps[-1]["stage"] == "bump" and failed.steps[-1]["status"] == "failed"
    assert not redis_client.smembers("shipline:bump:pending:staging")


MANIFESTS_URL = "http://127.0.0.1:1/local/super.git"


def manifests_staging(stack, redis_client, tmp_path: Path) -> tuple[Pipeline, list[tuple[str, ...]]]:
    """A pipeline whose one environment, ``staging``, is synced from ``MANIFESTS_URL``'s main branch;
    and the messages it enqueues."""
    config = parse_config({"state_dir": str(tmp_path), "redis": {"url": stack.redis.url},
                           "environments": [{"name": "staging", "git": {"url": MANIFESTS_URL, "branch": "main"}}]})
    queued: list[tuple[str, ...]] = []
    return Pipeline(config, EventStore(redis_client), lambda *msg: queued.append(msg)), queued


def test_a_manifests_push_tells_its_sync_which_commit_to_expect(stack, redis_client, tmp_path) -> None:
    """The forge's push webhook names the new head: the sync it asks for must not take a branch
    head read (and shared) a moment before that push (``syncrun.remote_head(pushed=...)``)."""
    pipeline, queued = manifests_staging(stack, redis_client, tmp_path)

    pipeline.process_event(record(pipeline.store, MANIFESTS_URL, "1" * 40, "2" * 40))

    assert [m[:3] for m in queued] == [("sync", "sync_env", "staging")]
    assert redis_client.get(f"shipline:pushed:{MANIFESTS_URL}:main") == "2" * 40


def test_a_sync_that_dies_while_reporting_finishes_its_events_when_retried(stack, redis_client, tmp_path,
                                                                            monkeypatch) -> None:
    """Redis gone after the apply, before a manifests push was marked done: dramatiq retries the
    job, and the retry must not find itself covered and leave the push unfinished for good."""
    import redis as redis_lib

    pipeline, queued = manifests_staging(stack, redis_client, tmp_path)
    store = pipeline.store
    synced = stub_syncs(monkeypatch)
    pushed = record(store, MANIFESTS_URL, "1" * 40, "2" * 40)
    pipeline.process_event(pushed)
    assert store.get(pushed).status == "running"
    finish = EventStore.set_status

    def redis_dies_once(self, event_id: str, status: str, outcome: str = "", **kwargs: object) -> None:
        monkeypatch.setattr(EventStore, "set_status", finish)
        raise redis_lib.ConnectionError("Connection refused")

    monkeypatch.setattr(EventStore, "set_status", redis_dies_once)
    (_, actor, env_name, number), = [m for m in queued if m[1] == "sync_env"]
    with pytest.raises(redis_lib.ConnectionError):
        pipeline.sync(env_name, int(number))
    assert pipeline.sync(env_name, int(number)) is not None, "the retry found itself covered"

    done = store.get(pushed)
    assert done.status == "done"
    assert [s["stage"] for s in done.steps].count("sync") == 1
    assert synced == ["staging", "staging"]
    assert pipeline.sync(env_name, int(number)) is None, "a third delivery of the same job is covered"


def test_a_report_cut_short_leaves_the_retry_only_what_it_had_not_reported(stack, redis_client, tmp_path,
                                                                           monkeypatch) -> None:
    """A sync reports its events a chunk at a time, each chunk taken off the pending set in the
    transaction that wrote it: Redis gone in the third chunk keeps the first two reported, and the
    retry reports the rest, one sync step per event in all."""
    import redis as redis_lib

    import service.pipeline as pipeline_module

    monkeypatch.setattr(pipeline_module, "REPORT_CHUNK", 2)
    pipeline, queued = manifests_staging(stack, redis_client, tmp_path)
    store = pipeline.store
    stub_syncs(monkeypatch)
    pushes = [record(store, MANIFESTS_URL, f"{n}" * 40, f"{n + 1}" * 40) for n in range(1, 6)]
    for pushed in pushes:
        pipeline.process_event(pushed)
    finish, calls = EventStore.set_status, []

    def redis_dies_at_the_fifth(self, event_id: str, status: str, outcome: str = "", **kwargs: object) -> None:
        calls.append(event_id)
        if len(calls) == 5:
            raise redis_lib.ConnectionError("Connection refused")
        finish(self, event_id, status, outcome, **kwargs)

    monkeypatch.setattr(EventStore, "set_status", redis_dies_at_the_fifth)
    number = max(int(m[3]) for m in queued if m[1] == "sync_env")
    with pytest.raises(redis_lib.ConnectionError):
        pipeline.sync("staging", number)
    ordered = sorted(pushes)
    assert [store.get(e).status for e in ordered] == ["done"] * 4 + ["running"]
    assert redis_client.smembers("shipline:sync:events:staging") == {ordered[4]}
    monkeypatch.setattr(EventStore, "set_status", finish)
    assert pipeline.sync("staging", number) is not None
    for event_id in ordered:
        done = store.get(event_id)
        assert done.status == "done" and [s["stage"] for s in done.steps].count("sync") == 1
    assert not redis_client.smembers("shipline:sync:events:staging")


def test_a_sync_covering_thousands_of_events_reads_them_a_chunk_per_round_trip(stack, redis_client, tmp_path,
                                                                                 monkeypatch) -> None:
    """After a backlog one sync covers tens of thousands of events. Its lead times and its report
    read and write them a chunk per round trip: one read each (the 30-minute soak) outlasted the
    time between faults, and the retry began again from the first."""
    from service.environments import EnvironmentStatusStore

    pipeline, _ = manifests_staging(stack, redis_client, tmp_path)
    store = pipeline.store
    stub_syncs(monkeypatch)
    EnvironmentStatusStore(redis_client).put("staging", {"health": "Healthy", "revision": "c0ffee"})
    covered = 3000
    pushes = [record(store, MANIFESTS_URL, "1" * 40, "2" * 40) for _ in range(covered)]
    redis_client.sadd("shipline:sync:events:staging", *pushes)
    number = redis_client.incr("shipline:sync:req:staging")
    with round_trips() as trips:
        assert pipeline.sync("staging", number) is not None

    assert len(trips) < 100, f"{len(trips)} round trips for {covered} events"
    assert all(redis_client.hget(f"shipline:leadtime:{p}", "staging") is not None for p in pushes)
    assert not redis_client.smembers("shipline:sync:events:staging")
    assert sum(1 for p in pushes if [s["stage"] for s in store.get(p).steps].count("sync") == 1) == covered


def test_a_bump_given_up_half_way_leaves_the_rest_pending_for_its_redelivery(stack, redis_client, tmp_path,
                                                                             monkeypatch) -> None:
    """A bump out of retries marks its events failed a chunk per transaction, each chunk taken off
    the pending set with its marks: a worker gone half-way leaves the rest pending (the redelivered
    job marks them), not neither pending nor final as when they were all taken off first."""
    import redis as redis_lib

    import service.pipeline as pipeline_module
    from handlers.errors import TransientError

    monkeypatch.setattr(pipeline_module, "REPORT_CHUNK", 3)
    image = f"{stack.registry.host}/shop/web"
    pipeline, _ = staging_of(stack, redis_client, tmp_path, [image])
    store = pipeline.store
    ids = [image_record(stack, store, image, f"1.0.{n}") for n in range(7)]
    redis_client.sadd("shipline:bump:pending:staging", *ids)
    finish, calls = EventStore.set_status, []

    def worker_gone_at_the_fifth(self, event_id: str, status: str, outcome: str | None = None, **kw: object) -> None:
        calls.append(event_id)
        if len(calls) == 5:
            raise redis_lib.ConnectionError("Connection refused")
        finish(self, event_id, status, outcome, **kw)

    monkeypatch.setattr(EventStore, "set_status", worker_gone_at_the_fifth)
    error = TransientError("git push failed: connection refused")
    with pytest.raises(redis_lib.ConnectionError):
        pipeline.give_up("bump_env", ("staging",), error)
    ordered = sorted(ids)
    assert [store.get(i).status for i in ordered[:3]] == ["failed"] * 3
    assert redis_client.smembers("shipline:bump:pending:staging") == set(ordered[3:])

    monkeypatch.setattr(EventStore, "set_status", finish)
    assert pipeline.give_up("bump_env", ("staging",), error) == ordered[3:]
    for event_id in ordered:
        failed = store.get(event_id)
        assert failed.status == "failed" and "connection refused" in failed.outcome
        assert [(s["stage"], s["status"]) for s in failed.steps] == [("bump", "failed")]
    assert not redis_client.smembers("shipline:bump:pending:staging")


def test_a_sync_reads_the_flap_pause_and_the_pushed_head_it_is_given(stack, redis_client, tmp_path,
                                                                     monkeypatch) -> None:
    """While the flap guard pauses correction at the environment's revision, the sync only reports
    drift, and the status says why; the head Shipline pushed last reaches the head read."""
    import json

    from handlers.sync.health import HEALTHY
    from handlers.sync.reconcile import SyncResult
    from service.environments import EnvironmentStatusStore

    pipeline, queued = staging_pipeline(stack, redis_client, tmp_path)
    calls: list[dict[str, object]] = []

    def sync_now(env, state_dir, *, correct_drift=None, pushed=None):  # noqa: ANN001, ANN202
        calls.append({"correct_drift": correct_drift, "pushed": pushed})
        return SyncResult("c0ffee", (), (), 0, (), HEALTHY, (), 0.1)

    monkeypatch.setattr("service.pipeline.sync_now", sync_now)
    statuses = EnvironmentStatusStore(redis_client)

    def sync() -> dict[str, object]:
        pipeline.request_sync("staging")
        pipeline.sync("staging", int(queued[-1][3]))
        return statuses.get("staging")

    assert sync()["drift_paused"] == ""
    reason = "drift of apps/v1/Deployment/web corrected 3 times in 600s"
    redis_client.set("shipline:drift:paused:staging", json.dumps({"reason": reason, "revision": "c0ffee"}))
    redis_client.set("shipline:pushed:http://127.0.0.1:1/m.git:main", "b" * 40)  # Shipline pushed it
    assert sync()["drift_paused"] == reason
    assert calls == [{"correct_drift": None, "pushed": None}, {"correct_drift": False, "pushed": "b" * 40}]


def test_a_failed_sync_stores_why_and_keeps_the_revision_it_had(stack, redis_client, tmp_path, monkeypatch) -> None:
    from handlers.errors import TransientError
    from service.environments import EnvironmentStatusStore

    def sync_now(env, state_dir, *, correct_drift=None, pushed=None):  # noqa: ANN001, ANN202
        raise TransientError("git ls-remote failed: connection refused")

    monkeypatch.setattr("service.pipeline.sync_now", sync_now)
    pipeline, queued = staging_pipeline(stack, redis_client, tmp_path)
    statuses = EnvironmentStatusStore(redis_client)
    statuses.put("staging", {"health": "Healthy", "revision": "c0ffee", "images": ["web:1"]})
    pipeline.request_sync("staging")
    with pytest.raises(TransientError):
        pipeline.sync("staging", int(queued[-1][3]))
    status = statuses.get("staging")
    assert (status["health"], status["revision"], status["images"]) == ("SyncFailed", "c0ffee", ["web:1"])
    assert status["reason"] == "TransientError: git ls-remote failed: connection refused"
