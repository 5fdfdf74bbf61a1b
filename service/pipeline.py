"""What each actor does, as plain functions over (config, store, enqueue): routing an event to
its stages, one writer per branch, superseding builds, one bump per release and environment,
coalescing syncs, drift seen from the watch, rollback.

Framework-free so it can be tested without a worker; ``service.actors`` is the thin dramatiq
layer on top. Results stay typed (``BuildReport``, ``BumpResult``, ``SyncResult``) until an edge
stores or sends them. Coordination state lives in Redis under ``shipline:``:
- ``build:latest:<repo>:<ref>``  the newest event for a branch; older builds see it and stop
- ``building:<image>``, ``release:<id>:held``, ``releases:open``  images of a build in progress
                                 and the events held for it (``service.releases``)
- ``commit:<sha>``               a manifests commit Shipline pushed, and the releases it carries
- ``bump:pending:<env>``         image events waiting for the next commit of an environment
- ``sync:req:<env>``/``sync:done:<env>``/``sync:events:<env>`` request and completion counters
                                 that coalesce syncs, and the events the next sync reports to
- ``drift:*``                    drift triggers and the flap guard (``service.flapguard``)
- ``heldback:<env>``             tags a rollback holds back (``service.rollback``)
- ``leadtime:<release>``         push received → Healthy, per environment
- ``lock:*``                     leased locks: one build per (repo, ref), one writer per
                                 (manifests repo, branch), one sync per environment
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from redis.exceptions import LockError

from handlers import bump as bumping
from handlers.build.report import BuildReport
from handlers.build.run import build_push
from handlers.bump import BumpResult
from handlers.errors import PermanentError
from handlers.events import Event, GitPushed, ImagePushed, event_from_dict, event_to_dict
from handlers.images import ImageRef, normalize_image, same_image
from handlers.manifests import ImageUpdate
from handlers.routing import build_reason
from handlers.settings import EnvironmentConfig
from handlers.sync.reconcile import SyncResult
from service import metrics, notify, pullrequests, rollback
from service.broker import QUEUE_BUILD, QUEUE_BUMP, QUEUE_EVENTS, QUEUE_SYNC
from service.chunks import chunks
from service.config import Config
from service.environments import EnvironmentStatusStore
from service.flapguard import FlapGuard
from service.livestate import cluster_name
from service.releases import Releases
from service.store import EventRecord, EventStore, new_event_id
from service.syncrun import status_of, sync_now

log = logging.getLogger("shipline.pipeline")
Enqueue = Callable[..., None]  # enqueue(queue, actor_name, *args)
LOCK_TIMEOUT_SECONDS = 20
"""A lock's lease: its holder renews it every quarter of that, so a ``kill -9``-ed holder (whose
job dramatiq redelivers after ``service.broker.HEARTBEAT_TIMEOUT_MS`` at the earliest) leaves a
lock that is already free, or frees within seconds: never the hour it took before."""
LOCK_WAIT_SECONDS = 1800
LOCK_POLL_SECONDS = 0.05
"""A waiter asks for a busy lock this often (redis-py's default, 0.1 s, was a tenth of a second
between one holder and the next)."""
DRIFT_QUEUED_SECONDS = 30
"""Several worker processes see the same drift: one of them asks for the sync."""
REPORT_CHUNK = 500
"""Events a sync reports per round trip and transaction (``Pipeline._report_sync``)."""
LOG_TAIL_BYTES = 64 * 1024
PUSHED_HEAD_TTL_SECONDS = 300
"""How long a commit pushed to a manifests branch (a bump's, or one a push webhook announced)
stays known to the syncs after it (``syncrun.remote_head``)."""
LATEST_WAITS_LUA = """
local latest = tonumber(redis.call('get', KEYS[1]) or '0')
if tonumber(ARGV[1]) >= latest then
  redis.call('set', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return tonumber(ARGV[1])
end
return latest
"""
"""KEYS[1]: an environment's waiting sync; ARGV: this job's request number, the lease. The number
of the job that waits (this one if no later one does), kept for the lease."""
STAGE_OF_ACTOR = {"process_event": "route", "build_repo": "build", "bump_env": "bump", "sync_env": "sync"}


@dataclass
class Pipeline:
    config: Config
    store: EventStore
    enqueue: Enqueue

    @property
    def r(self) -> Any:
        return self.store.r

    @property
    def state_dir(self) -> Path:
        return self.config.state_dir

    @cached_property
    def _latest_waits(self) -> Any:  # registered once: a waiting sync job asks it every poll
        return self.r.register_script(LATEST_WAITS_LUA)

    @property
    def releases(self) -> Releases:
        return Releases(self.r, self.config.build.timeout_seconds, self.config.redis.dedupe_ttl_seconds)

    def lock(self, name: str, *, unless: Callable[[], bool] | None = None) -> Any:
        return leased_lock(self.r, f"shipline:lock:{name}", unless=unless)

    # -- events ------------------------------------------------------------------------
    def process_event(self, event_id: str) -> str:
        record = self._record(event_id)
        event = event_from_dict(record.event)
        self.store.set_status(event_id, "running")
        if isinstance(event, GitPushed):
            outcome = self._route_push(record, event)
        else:
            outcome = self._route_image(record, event)
        self.store.add_step(event_id, "route", "done", outcome)
        return outcome

    def _route_push(self, record: EventRecord, event: GitPushed) -> str:
        stages = []
        made = self.releases.commit(event.after) if event.is_branch else None
        if made:  # the forge telling us about Shipline's own manifests commit: part of that release
            for correlation in made["correlations"]:
                self.store.link(record.id, correlation)
            stages.append(f"Shipline's own commit for {made['environment']}")
        repo = self.config.router.repo_for(event)
        if repo is not None and build_reason(repo, event) is None:
            self.r.set(f"shipline:build:latest:{repo.name}:{event.ref}", record.id)
            self.enqueue(QUEUE_BUILD, "build_repo", record.id, repo.name)
            stages.append(f"build {repo.name}")
        for env in self.config.router.envs_for_git(event):
            if event.is_branch and event.after.strip("0"):  # its sync must not take a head read before it
                self.r.set(_pushed_key(env), event.after, ex=PUSHED_HEAD_TTL_SECONDS)
            self.request_sync(env.name, record.id)
            stages.append(f"sync {env.name}")
        if len(stages) == (1 if made else 0):
            self.store.set_status(record.id, "ignored", "nothing configured for this push")
        return ", ".join(stages) or "ignored"

    def _route_image(self, record: EventRecord, event: ImagePushed) -> str:
        release = None if record.event_type.startswith("promote:") else self.releases.building(event.image)
        if release is not None and release != record.id:
            self.releases.hold(release, record.id)
            self.store.link(record.id, release)
            return f"held for release {release}: bumped with its other images when its build ends"
        envs = self._bump_envs(record, event)
        if not envs:
            self.store.set_status(record.id, "ignored", "no environment takes this image automatically")
            return "ignored"
        return ", ".join(f"bump {e.name}" for e in envs)

    def _bump_envs(self, record: EventRecord, event: ImagePushed, *, enqueue: bool = True) -> list[EnvironmentConfig]:
        """Queue ``record`` for the environments that take it, and (unless the caller does it once
        for many events) ask for their bumps."""
        if record.event_type.startswith("promote:"):
            wanted = record.event_type.removeprefix("promote:")
            envs = [e for e in self.config.router.envs_for_image(event) if e.name == wanted]
        else:
            envs = [e for e in self.config.router.envs_for_image(event) if e.trigger in ("branch", "release")]
        for env in envs:
            self.r.sadd(f"shipline:bump:pending:{env.name}", record.id)
            if enqueue:
                self.request_bump(env.name)
        return envs

    def request_bump(self, env_name: str) -> None:
        """A ``bump_env`` job numbered after the pending events it is for (added before this), so a
        job whose events an earlier bump already committed ends at once instead of queueing for
        the branch's write lock."""
        number = self.r.incr(f"shipline:bump:req:{env_name}")
        self.enqueue(QUEUE_BUMP, "bump_env", env_name, str(number))

    # -- build -------------------------------------------------------------------------
    def build(self, event_id: str, repo_name: str) -> BuildReport:
        record = self._record(event_id)
        event = event_from_dict(record.event)
        if not isinstance(event, GitPushed):
            raise PermanentError(f"event {event_id} is a {event.kind}, not a push")
        repo = next(r for r in self.config.repos if r.name == repo_name)
        latest_key = f"shipline:build:latest:{repo.name}:{event.ref}"
        release = record.correlation_id or record.id

        def still_newest() -> bool:
            return self.r.get(latest_key) in (None, event_id)

        with self.lock(f"build:{repo.name}:{event.ref}"):
            if not still_newest():
                self._finish(event_id, "superseded", "a newer push to this ref arrived before the build started")
                return BuildReport(repo.name, event.ref, event.after)
            self.store.add_step(event_id, "build", "running", f"{repo.name} {event.short_ref}@{event.after[:7]}")
            notify.build_started(self.config, repo, event, event_id)
            self.releases.open(release, [i.name for i in repo.images])
            started = time.monotonic()
            try:
                report = build_push(repo, event, settings=self.config.build, registries=self.config.registries,
                                    state_dir=self.state_dir, should_continue=still_newest)
            except PermanentError:
                self.close_release(release)  # what was pushed before the failure still goes out
                raise
        _observe("build", started, "failed" if report.failed else "done")
        self._after_build(record, report)
        notify.build_finished(self.config, repo, event, event_id, report)
        return report

    def _after_build(self, record: EventRecord, report: BuildReport) -> None:
        self._keep_logs(record.id, report)
        release = record.correlation_id or record.id
        emitted = [self.emit_image(record, image.name, tag, image.digest)
                   for image in report.pushed if image.digest for tag in image.tags]
        self.close_release(release, extra=emitted)
        summary = "; ".join(f"{i.name}: {i.status} {i.reason}".strip() for i in report.images)
        summary = summary or report.nothing_to_build_reason or "nothing to build"
        if report.failed:
            self.store.add_step(record.id, "build", "failed", summary)
            self._finish(record.id, "failed", summary)
        elif report.images and all(i.status == "superseded" for i in report.images):
            self._finish(record.id, "superseded", summary)
        else:
            self.store.add_step(record.id, "build", "done", summary)
            self._finish(record.id, "done", summary)

    def close_release(self, release: str, extra: list[str] | None = None) -> list[str]:
        """The release's held and built image events go to each environment's bump together."""
        event_ids = sorted(set(self.releases.close(release)) | set(extra or []))
        envs: set[str] = set()
        for event_id in event_ids:
            record = self.store.get(event_id)
            if record is None:
                continue
            event = event_from_dict(record.event)
            if not isinstance(event, ImagePushed):
                continue
            taken = self._bump_envs(record, event, enqueue=False)  # all pending before any bump runs
            envs |= {e.name for e in taken}
            self.store.add_step(event_id, "route", "done", ", ".join(f"bump {e.name}" for e in taken) or "ignored")
            if not taken:
                self.store.set_status(event_id, "ignored", "no environment takes this image automatically")
        for env_name in sorted(envs):
            self.request_bump(env_name)
        if event_ids:
            log.info("release closed", extra={"correlation_id": release, "events": len(event_ids),
                                              "environments": sorted(envs)})
        return event_ids

    def _keep_logs(self, event_id: str, report: BuildReport) -> None:
        """Build log tails go to Redis so the API (maybe on another host) can serve them."""
        logs = {i.name: Path(i.log).read_text(errors="replace")[-LOG_TAIL_BYTES:]
                for i in report.images if i.log and Path(i.log).is_file()}
        if logs:
            self.r.hset(f"shipline:buildlog:{event_id}", mapping=logs)
            self.r.expire(f"shipline:buildlog:{event_id}", self.config.redis.dedupe_ttl_seconds)

    def emit_image(self, parent: EventRecord, image: str, tag: str, digest: str) -> str:
        """The built image as an ``ImagePushed`` of ``parent``'s release; deduplicated against the
        registry's own notification (then that one is the release's). Returns its event id."""
        ref = ImageRef.parse(image)
        event = ImagePushed(registry=ref.host, repository=ref.repository, tag=tag, digest=digest,
                            delivery_id=f"build:{parent.id}", source="shipline")
        child = EventRecord(id=new_event_id(), source="shipline", receiver="build", kind=event.kind,
                            event=event_to_dict(event), correlation_id=parent.correlation_id or parent.id,
                            event_type="image built")
        holder = self.submit(child, f"sem:{self.config.router.semantic_key(event)}", route=False)
        if holder is None:
            return child.id
        self.store.link(holder, child.correlation_id)  # the registry's own notification came first
        return holder

    def submit(self, record: EventRecord, dedupe_key: str, *, route: bool = True) -> str | None:
        """Record an event Shipline makes itself, once per ``dedupe_key`` (and route it, unless the
        caller does); the holder's id when the key was taken already."""
        holder = self.store.claim([dedupe_key], record.id)
        if holder is None:
            self.store.save(record)
            if route:
                self.enqueue(QUEUE_EVENTS, "process_event", record.id)
            self.store.set_status(record.id, "enqueued" if route else "running")
        return holder

    # -- bump --------------------------------------------------------------------------
    def bump(self, env_name: str, request: int = 0) -> tuple[BumpResult, ...]:
        """Commit every pending image event of ``env_name``: all of them in one commit. ``request``:
        the job's number (``request_bump``); nothing to do once a bump covered it."""
        env = self.config.environment(env_name)
        pending_key, done_key = f"shipline:bump:pending:{env.name}", f"shipline:bump:done:{env.name}"

        def covered() -> bool:
            return bool(request) and int(self.r.get(done_key) or 0) >= request

        def cover(upto: int) -> None:
            """Every job numbered up to ``upto`` is covered (its events were pending before it was numbered)."""
            self.r.set(done_key, max(upto, int(self.r.get(done_key) or 0)))

        results: list[BumpResult] = []  # a covered job ends with none: the lock asks covered() first
        with self.lock(f"write:{env.git.url}:{env.git.branch}", unless=covered) as lock:
            while lock is not None:
                upto = int(self.r.get(f"shipline:bump:req:{env.name}") or 0)  # read before the events
                ids = sorted(self.r.smembers(pending_key))
                if not ids:
                    cover(upto)
                    break
                records, held = rollback.held_back(self.r, env, self.store.records(ids))
                for record, why in held:
                    self.store.add_step(record.id, "bump", "skipped", why, environment=env.name)
                    self._finish(record.id, "done", why)
                updates = [_update(env, event_from_dict(r.event)) for r in records]
                started = time.monotonic()
                result = bumping.bump(env, updates, [r.id for r in records], self.state_dir) if records \
                    else BumpResult(None, (), ())
                _observe("bump", started, "done")
                self._after_bump(env, records, result)  # a transient failure here (the pull request) retries them
                self.r.srem(pending_key, *ids)
                # after each round, not only when the branch next runs dry: a backlog kept it busy
                # for seconds, and most worker threads waited here meanwhile
                cover(upto)
                results.append(result)
        return tuple(results)

    def _after_bump(self, env: EnvironmentConfig, records: list[EventRecord], result: BumpResult) -> None:
        linked = {r.id: r for r in self.store.records([r.id for r in records])}  # correlations linked meanwhile
        records = [linked.get(r.id, r) for r in records]
        changes = [f"{c.file}: {c.old} → {c.new}" for c in result.changes]
        detail = f"{env.name}: commit {result.commit[:10]} " if result.commit else f"{env.name}: no change "
        detail += "; ".join(changes or list(result.skipped))
        correlations = sorted({r.correlation_id or r.id for r in records})
        if result.commit:  # the sync that follows must not take a branch head read before this push
            self.r.set(_pushed_key(env), result.commit, ex=PUSHED_HEAD_TTL_SECONDS)
            self.releases.remember_commit(result.commit, correlations, env.name)
            rollback.remember_bump(self.r, env, result.commit, records, self.config.redis.dedupe_ttl_seconds)
        for chunk in chunks(records, REPORT_CHUNK):  # one round trip per chunk: a backlog bumps thousands
            with self.r.pipeline(transaction=True) as writes:
                for record in chunk:
                    for event_id in dict.fromkeys((record.id, record.correlation_id or record.id)):
                        self.store.add_step_to(writes, event_id, "bump", "done", detail, environment=env.name,
                                               commit=result.commit or "")
                    self.store.set_status(record.id, "done", detail, pipe=writes)
                writes.execute()
        if env.pull_request is not None and (result.commit or result.already_applied):
            moved = {event.image: event.tag for event in (event_from_dict(r.event) for r in records)
                     if isinstance(event, ImagePushed)}
            url = notify.event_url(self.config, correlations[0]) if correlations else ""
            pull = pullrequests.propose(self.r, env, result, moved, ttl=self.config.redis.dedupe_ttl_seconds,
                                        release_url=url)
            if pull is not None:
                for correlation in correlations:
                    self.store.add_step(correlation, "bump", "done", f"{env.name}: pull request #{pull.number} "
                                        f"{pull.html_url}".strip(), environment=env.name)
        if result.commit or result.already_applied:  # redelivered after its push landed: still sync
            self.request_sync(env.name, *correlations)

    # -- sync --------------------------------------------------------------------------
    def request_sync(self, env_name: str, *event_ids: str) -> None:
        if event_ids:  # recorded before the request counter moves, so the sync that covers it reports to it
            self.r.sadd(f"shipline:sync:events:{env_name}", *event_ids)
        number = self.r.incr(f"shipline:sync:req:{env_name}")
        self.enqueue(QUEUE_SYNC, "sync_env", env_name, str(number))

    def request_due_reconciles(self) -> list[str]:
        """The periodic reconcile: a sync request for each environment whose ``reconcile_interval``
        passed since one was last asked for by any worker (a key with that TTL, set if absent: one
        worker in the fleet asks). Every environment's key in one round trip: a command each, from
        every worker process every tick, was 40 round trips a second for 100 environments and two
        processes at rest."""
        environments = list(self.config.environments)
        with self.r.pipeline(transaction=False) as claims:
            for env in environments:
                claims.set(f"shipline:reconcile:{env.name}", "1", nx=True, ex=env.reconcile_interval)
            claimed = claims.execute()
        due = [env.name for env, won in zip(environments, claimed, strict=True) if won]
        for name in due:
            self.request_sync(name)
        return due

    def drift_seen(self, env_name: str, what: str) -> bool:
        """The drift watcher saw ``env_name`` drift (no sync of it running): a sync request, unless
        one asked for drift is queued and not done yet (it reads the live state after this drift
        anyway; one that failed is asked again after ``DRIFT_QUEUED_SECONDS``). Watchers in several
        worker processes may both ask; the sync counters coalesce them."""
        statuses = EnvironmentStatusStore(self.r)
        statuses.note_drift(env_name, what)
        requested, done = self.r.mget(f"shipline:sync:req:{env_name}", f"shipline:sync:done:{env_name}")
        queued = f"shipline:drift:queued:{env_name}"
        if int(requested or 0) > int(done or 0) and self.r.exists(queued):
            return False
        self.r.set(queued, "1", ex=DRIFT_QUEUED_SECONDS)
        self.request_sync(env_name)
        return True

    def syncing(self, env_name: str) -> bool:
        return bool(self.r.exists(f"shipline:lock:sync:{env_name}"))

    def sync(self, env_name: str, request: int) -> SyncResult | None:
        """The environment's sync, unless a later one already covered this request (None).

        ``done`` moves only after every event the sync covers got its step and final status, in
        one transaction with their removal: a job that dies half-way (Redis gone, worker killed)
        is retried uncovered, syncs again (nothing left to apply) and reports what was left."""
        env = self.config.environment(env_name)
        done_key, events_key = f"shipline:sync:done:{env.name}", f"shipline:sync:events:{env.name}"

        def covered(done: str | bytes | None) -> bool:
            return int(done or 0) >= request

        def covered_or_later_waits() -> bool:
            return covered(self.r.get(done_key)) or self._later_sync_waits(env.name, request)

        with self.lock(f"sync:{env.name}", unless=covered_or_later_waits) as lock:
            if lock is None:
                return None
            with self.r.pipeline(transaction=False) as reads:  # one round trip: a fleet syncs often
                reads.get(done_key)
                reads.get(f"shipline:sync:req:{env.name}")
                reads.smembers(events_key)
                done, requested, pending = reads.execute()
            if covered(done):
                return None
            upto = int(requested or request)
            event_ids = sorted(pending)
            try:
                result = self._sync_now(env)
            finally:  # the stored result, success or SyncFailed: lead time and notifications
                self._synced(env, event_ids)
            self._report_sync(env, result, event_ids)
            if result.health.status == "Healthy":
                self.promote_followers(env, list(result.images))  # once per tag: a retry promotes nothing twice
            with self.r.pipeline(transaction=True) as done:
                done.set(done_key, upto)
                if event_ids:
                    done.srem(events_key, *event_ids)
                done.execute()
        if result.health.status != "Healthy" and env.rollback == "auto" and rollback.timed_out(result):
            rollback.after_degraded(self, env, result)
        return result

    def _later_sync_waits(self, env_name: str, request: int) -> bool:
        """Only the latest sync job of an environment waits for its lock; an earlier one ends at
        once, as the later sync covers its events too (they were pending before its number). Each
        waiting job held a worker thread: a slow sync of one environment with a job per event
        behind it kept every thread, and the other environments' syncs, waiting. A waiter that
        dies leaves its job to dramatiq's redelivery and its place to the next after the lease."""
        latest = self._latest_waits(keys=[f"shipline:sync:waiting:{env_name}"], args=[request, LOCK_TIMEOUT_SECONDS])
        return int(latest) > request

    def _report_sync(self, env: EnvironmentConfig, result: SyncResult, event_ids: list[str]) -> None:
        """Each event's sync step, once per revision; a manifests push ends here (its job was the sync).

        ``REPORT_CHUNK`` events at a time: one round trip reads what each needs, one transaction
        writes their steps and statuses and takes them off the environment's pending set, so a
        report cut short (a killed worker, Redis restarted) leaves the retry only what was not
        reported yet. Event by event, a 30-minute soak's sync had 58,000 events to report at five
        round trips each, took longer than the two minutes between worker kills, and began again
        from the first event each time."""
        summary = status_of(result, cluster_name(env.cluster))["summary"]
        for chunk in chunks(event_ids, REPORT_CHUNK):
            self._report_chunk(env, result, summary, chunk)

    def _report_chunk(self, env: EnvironmentConfig, result: SyncResult, summary: str, event_ids: list[str]) -> None:
        reported = [self._reported_key(env.name, event_id, result.revision) for event_id in event_ids]
        with self.r.pipeline(transaction=False) as reads:
            for key in reported:
                reads.exists(key)
            seen = reads.execute()
        heads = self.store.heads(event_ids)
        with self.r.pipeline(transaction=True) as writes:
            for event_id, key, was_reported, head in zip(event_ids, reported, seen, heads, strict=True):
                if not was_reported:
                    self.store.add_step_to(writes, event_id, "sync", result.health.status, summary,
                                           environment=env.name, revision=result.revision)
                    writes.set(key, "1", ex=self.config.redis.dedupe_ttl_seconds)
                if head == ("git_pushed", "running"):
                    self.store.set_status(event_id, "done", summary, pipe=writes)
            writes.srem(f"shipline:sync:events:{env.name}", *event_ids)
            writes.execute()

    def _sync_now(self, env: EnvironmentConfig) -> SyncResult:
        started = time.monotonic()
        statuses = EnvironmentStatusStore(self.r)
        guard = FlapGuard(self.r)
        status_raw, pause_raw, pushed = self.r.mget(statuses.key(env.name), guard.pause_key(env), _pushed_key(env))
        previous = statuses.decode(env.name, status_raw)
        paused = guard.paused_as_read(env, previous.get("revision") or "", pause_raw)
        try:
            result = sync_now(env, self.state_dir, correct_drift=False if paused else None, pushed=pushed)
        except Exception as exc:
            _observe("sync", started, "error")
            statuses.put(env.name, {**previous, "health": "SyncFailed",  # read under this sync's lock
                                    "reason": f"{type(exc).__name__}: {exc}"[:2000], "last_sync": time.time()})
            raise
        _observe("sync", started, result.health.status)
        flap = guard.corrected(env, [str(d.ref) for d in result.drift if d.corrected], result.revision)
        status = status_of(result, cluster_name(env.cluster))
        status["drift_paused"] = flap or guard.paused(env, result.revision) or ""
        statuses.put(env.name, status)
        return result

    def promote_followers(self, env: EnvironmentConfig, images: list[str]) -> list[str]:
        """Environments that follow ``env`` get its images once it is synced and Healthy."""
        created = []
        for follower in (e for e in self.config.environments if e.follows == env.name):
            wanted = {normalize_image(i.image) for i in follower.images}
            for running in (ImageRef.parse(str(ref)) for ref in images):
                tag = running.tag
                if not tag or normalize_image(running.name) not in wanted:
                    continue
                event = ImagePushed(registry=running.host, repository=running.repository, tag=tag, digest="",
                                    delivery_id=f"follow:{env.name}", source="shipline")
                record = EventRecord(id=new_event_id(), source="shipline", receiver="follow", kind=event.kind,
                                     event=event_to_dict(event), event_type=f"promote:{follower.name}")
                record.correlation_id = record.id
                if self.submit(record, f"follow:{follower.name}:{event.image}:{tag}") is None:
                    created.append(record.id)  # else: this tag was promoted already
        return created

    def _reported_key(self, env_name: str, event_id: str, revision: str) -> str:
        """Set once (environment, event, revision) has its sync step: a ``process_event`` retried
        after Redis failed mid-way requests the same sync twice, and a sync retried after dying
        mid-report syncs again; the event still gets one step (set in the transaction that writes
        the step, ``_report_chunk``)."""
        return f"shipline:sync:reported:{env_name}:{event_id}:{revision}"

    def _synced(self, env: EnvironmentConfig, event_ids: list[str]) -> None:
        statuses = EnvironmentStatusStore(self.r)
        status = statuses.get(env.name)
        correlation_ids = sorted({facts.get("correlation_id") or event_id
                                  for event_id, facts in zip(event_ids, self.store.facts(event_ids), strict=True)
                                  if facts is not None})
        if status.get("health") == "Healthy":
            lead = metrics.observe_lead_time(self.store, env.name, correlation_ids)
            if lead:
                statuses.put(env.name, {**status, "lead_time": lead})
        notify.synced(self.config, self.r, env, status, event_ids, correlation_ids)

    # -- failures ----------------------------------------------------------------------
    def give_up(self, actor: str, args: tuple[str, ...], error: BaseException) -> list[str]:
        """No retry is left: every event the job carried ends ``failed`` with the error, visibly."""
        reason = f"{type(error).__name__}: {error}"
        if actor in ("process_event", "build_repo"):
            event_ids = list(args[:1])
            if actor == "build_repo" and event_ids:  # what the failed build pushed still goes out
                record = self.store.get(event_ids[0])
                self.close_release((record.correlation_id or record.id) if record else event_ids[0])
        elif actor == "bump_env":
            env = next((e for e in self.config.environments if e.name == args[0]), None)
            writer = self.lock(f"write:{env.git.url}:{env.git.branch}") if env else contextlib.nullcontext()
            with writer:  # no bump takes them meanwhile
                event_ids = sorted(self.r.smembers(f"shipline:bump:pending:{args[0]}"))
                self._failed(actor, args, reason, event_ids)
            return event_ids
        elif actor == "sync_env":
            event_ids = sorted(self.r.smembers(f"shipline:sync:events:{args[0]}"))
        else:
            event_ids = []
        self._failed(actor, args, reason, event_ids)
        return event_ids

    def _failed(self, actor: str, args: tuple[str, ...], reason: str, event_ids: list[str]) -> None:
        """A given-up job's events marked failed ``REPORT_CHUNK`` at a time, each chunk in one
        transaction that also takes a bump's off its pending set: hours of a git server down leave
        tens of thousands, and taking them all off first left a worker killed half-way with events
        neither pending nor final; now the redelivered job marks the rest."""
        stage = STAGE_OF_ACTOR.get(actor, actor)
        where = {"environment": args[0]} if stage in ("bump", "sync") else {}
        for chunk in chunks(event_ids, REPORT_CHUNK):
            with self.r.pipeline(transaction=True) as writes:
                for event_id in chunk:
                    self.store.add_step_to(writes, event_id, stage, "failed", reason, **where)
                    if stage != "sync":  # a sync failure is the environment's state; the event itself was delivered
                        self.store.set_status(event_id, "failed", reason, pipe=writes)
                if actor == "bump_env":
                    writes.srem(f"shipline:bump:pending:{args[0]}", *chunk)
                writes.execute()

    def close_overdue_releases(self) -> list[str]:
        """Releases whose build never reported back (its worker gone for good): their held events
        go to the bump now, late but not lost."""
        closed = []
        for release in self.releases.overdue():
            self.close_release(release)
            closed.append(release)
        return closed

    # -- helpers -----------------------------------------------------------------------
    def _record(self, event_id: str) -> EventRecord:
        record = self.store.get(event_id)
        if record is None:
            raise PermanentError(f"event {event_id} is not in the store (expired or never recorded)")
        return record

    def _finish(self, event_id: str, status: str, outcome: str) -> None:
        self.store.set_status(event_id, status, outcome)


@contextlib.contextmanager
def leased_lock(r: Any, key: str, *, unless: Callable[[], bool] | None = None) -> Iterator[Any]:
    """A Redis lock held with a short lease that a thread renews while the holder is alive.

    ``unless`` is asked while waiting: once true (the holder did this job's work, e.g. a later
    sync covered this request), the context is entered without the lock (``None``) and the job's
    thread is free at once, instead of each covered job taking the lock in turn to find nothing
    to do (a 100,000-event backlog spent most of its worker threads queued that way)."""
    lock = r.lock(key, timeout=LOCK_TIMEOUT_SECONDS, blocking_timeout=LOCK_WAIT_SECONDS, thread_local=False,
                  sleep=LOCK_POLL_SECONDS)
    if unless is None:
        acquired = lock.acquire()
    else:  # asked before every try: a holder that covered this job may release any moment
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            if unless():
                yield None
                return
            acquired = lock.acquire(blocking=False)
            if acquired or time.monotonic() > deadline:
                break
            time.sleep(LOCK_POLL_SECONDS)
    if not acquired:
        raise LockError(f"{key} still held after {LOCK_WAIT_SECONDS}s")
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(LOCK_TIMEOUT_SECONDS / 4):
            try:
                lock.reacquire()
            except Exception as exc:  # noqa: BLE001 - keep renewing; the next try may reach Redis
                log.warning("cannot renew %s: %s", key, exc)

    renewer = threading.Thread(target=renew, name=f"lease {key}", daemon=True)
    renewer.start()
    try:
        yield lock
    finally:
        stop.set()
        renewer.join()
        with contextlib.suppress(LockError):
            lock.release()


def _update(env: EnvironmentConfig, event: Event) -> ImageUpdate:
    if not isinstance(event, ImagePushed):
        raise PermanentError(f"{event.kind} in the bump queue of {env.name}")
    policy = next((i.policy_name for i in env.images if same_image(i.image, event.image)), None)
    return ImageUpdate(image=event.image, tag=event.tag, digest=event.digest, policy_name=policy)


def _pushed_key(env: EnvironmentConfig) -> str:
    return f"shipline:pushed:{env.git.url}:{env.git.branch}"


def _observe(stage: str, started: float, outcome: str) -> None:
    metrics.STAGE_SECONDS.labels(stage=stage, outcome=outcome).observe(time.monotonic() - started)
