"""What each actor does, as plain functions over (config, store, enqueue): routing an event to
its stages, one writer per branch, superseding builds, coalescing bumps and syncs.

Framework-free so it can be tested without a worker; ``service.actors`` is the thin dramatiq
layer on top. Coordination state lives in Redis under ``shipline:``:
- ``build:latest:<repo>:<ref>``  the newest event for a branch; older builds see it and stop
- ``bump:pending:<env>``         image events waiting for the next commit of an environment
- ``sync:req:<env>``/``sync:done:<env>`` request and completion counters that coalesce syncs
- ``lock:*``                     redis locks: one build per (repo, ref), one writer per
                                 (manifests repo, branch), one sync per environment
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.exceptions import LockError

from handlers.events import GitPushed, ImagePushed, event_from_dict, event_to_dict
from handlers.images import ImageRef, normalize_image, same_image
from handlers.routing import build_reason
from handlers.settings import EnvironmentConfig
from service import notify
from service.broker import QUEUE_BUILD, QUEUE_BUMP, QUEUE_EVENTS, QUEUE_SYNC
from service.config import Config
from service.store import EventRecord, EventStore, new_event_id
from service.targets import TargetStatusStore

log = logging.getLogger("shipline.pipeline")
Enqueue = Callable[..., None]  # enqueue(queue, actor_name, *args)
LOCK_TIMEOUT_SECONDS = 20
"""A lock's lease: its holder renews it every quarter of that, so a ``kill -9``-ed holder (whose
job dramatiq redelivers after ``service.broker.HEARTBEAT_TIMEOUT_MS`` at the earliest) leaves a
lock that is already free, or frees within seconds: never the hour it took before."""
LOCK_WAIT_SECONDS = 1800
LOG_TAIL_BYTES = 64 * 1024
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

    def lock(self, name: str) -> Any:
        return leased_lock(self.r, f"shipline:lock:{name}")

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
        repo = self.config.router.repo_for(event)
        if repo is not None and build_reason(repo, event) is None:
            self.r.set(f"shipline:build:latest:{repo.name}:{event.ref}", record.id)
            self.enqueue(QUEUE_BUILD, "build_repo", record.id, repo.name)
            stages.append(f"build {repo.name}")
        for env in self.config.router.envs_for_git(event):
            self.request_sync(env.name, record.id)
            stages.append(f"sync {env.name}")
        if not stages:
            self.store.set_status(record.id, "ignored", "nothing configured for this push")
        return ", ".join(stages) or "ignored"

    def _route_image(self, record: EventRecord, event: ImagePushed) -> str:
        if record.event_type.startswith("promote:"):
            wanted = record.event_type.removeprefix("promote:")
            envs = [e for e in self.config.router.envs_for_image(event) if e.name == wanted]
        else:
            envs = [e for e in self.config.router.envs_for_image(event) if e.trigger in ("branch", "release")]
        for env in envs:
            self.r.sadd(f"shipline:bump:pending:{env.name}", record.id)
            self.enqueue(QUEUE_BUMP, "bump_env", env.name)
        if not envs:
            self.store.set_status(record.id, "ignored", "no environment takes this image automatically")
            return "ignored"
        return ", ".join(f"bump {e.name}" for e in envs)

    # -- build -------------------------------------------------------------------------
    def build(self, event_id: str, repo_name: str) -> dict[str, Any]:
        from handlers.build.run import build_push

        record = self._record(event_id)
        event = event_from_dict(record.event)
        assert isinstance(event, GitPushed)
        repo = next(r for r in self.config.repos if r.name == repo_name)
        latest_key = f"shipline:build:latest:{repo.name}:{event.ref}"

        def still_newest() -> bool:
            return self.r.get(latest_key) in (None, event_id)

        with self.lock(f"build:{repo.name}:{event.ref}"):
            if not still_newest():
                self._finish(event_id, "superseded", "a newer push to this ref arrived before the build started")
                return {"status": "superseded"}
            self.store.add_step(event_id, "build", "running", f"{repo.name} {event.short_ref}@{event.after[:7]}")
            notify.build_started(self.config, repo, event, event_id)
            started = time.monotonic()
            report = build_push(repo, event, settings=self.config.build, registries=self.config.registries,
                                state_dir=self.state_dir, should_continue=still_newest)
        result = report.to_dict()
        _observe("build", started, result)
        self._after_build(record, result)
        notify.build_finished(self.config, repo, event, event_id, result)
        return result

    def _after_build(self, record: EventRecord, result: dict[str, Any]) -> None:
        images = result.get("images", [])
        self._keep_logs(record.id, images)
        failed = [i for i in images if i.get("status") == "failed"]
        for image in images:
            if image.get("status") in ("built", "retagged") and image.get("digest"):
                for tag in image.get("tags", []):
                    self.emit_image(record, image["name"], tag, image["digest"])
        summary = "; ".join(f"{i['name']}: {i['status']} {i.get('reason') or ''}".strip() for i in images)
        summary = summary or result.get("nothing_to_build_reason") or "nothing to build"
        if failed:
            self.store.add_step(record.id, "build", "failed", summary)
            self._finish(record.id, "failed", summary)
        elif images and all(i.get("status") == "superseded" for i in images):
            self._finish(record.id, "superseded", summary)
        else:
            self.store.add_step(record.id, "build", "done", summary)
            self._finish(record.id, "done", summary)

    def _keep_logs(self, event_id: str, images: list[dict[str, Any]]) -> None:
        """Build log tails go to Redis so the API (maybe on another host) can serve them."""
        logs = {}
        for image in images:
            path = image.get("log")
            if path and Path(path).is_file():
                logs[image["name"]] = Path(path).read_text(errors="replace")[-LOG_TAIL_BYTES:]
        if logs:
            self.r.hset(f"shipline:buildlog:{event_id}", mapping=logs)
            self.r.expire(f"shipline:buildlog:{event_id}", self.config.redis.dedupe_ttl_seconds)

    def emit_image(self, parent: EventRecord, image: str, tag: str, digest: str) -> None:
        """The built image as an ``ImagePushed``; deduplicated against the registry's own notification."""
        ref = ImageRef.parse(image)
        event = ImagePushed(registry=ref.host, repository=ref.repository, tag=tag, digest=digest,
                            delivery_id=f"build:{parent.id}", source="shipline")
        child = EventRecord(id=new_event_id(), source="shipline", receiver="build", kind=event.kind,
                            event=event_to_dict(event), correlation_id=parent.correlation_id or parent.id,
                            event_type="image built")
        holder = self._submit(child, f"sem:{event.semantic_key}")
        if holder is not None:  # the registry's own notification came first: same image, one bump
            self.store.link(holder, child.correlation_id)

    def _submit(self, record: EventRecord, dedupe_key: str) -> str | None:
        """Record and enqueue an event Shipline makes itself, once per ``dedupe_key``; the holder's id
        when the key was taken already."""
        holder = self.store.claim([dedupe_key], record.id)
        if holder is None:
            self.store.save(record)
            self.enqueue(QUEUE_EVENTS, "process_event", record.id)
            self.store.set_status(record.id, "enqueued")
        return holder

    # -- bump --------------------------------------------------------------------------
    def bump(self, env_name: str) -> dict[str, Any]:
        """Commit every pending image event of ``env_name`` (the first at once, the rest together)."""
        from handlers.bump import bump
        from handlers.manifests import ImageUpdate

        env = self.config.environment(env_name)
        pending_key = f"shipline:bump:pending:{env.name}"
        commits: list[str] = []
        with self.lock(f"write:{env.git.url}:{env.git.branch}"):
            while True:
                ids = sorted(self.r.smembers(pending_key))
                if not ids:
                    break
                records = [r for r in (self.store.get(i) for i in ids) if r is not None]
                updates = [_update(ImageUpdate, env, event_from_dict(r.event)) for r in records]
                started = time.monotonic()
                result = bump(env, updates, [r.id for r in records], self.state_dir)
                _observe("bump", started, {"status": "done"})
                self.r.srem(pending_key, *ids)
                self._after_bump(env, records, result)
                if result.commit:
                    commits.append(result.commit)
        return {"commits": commits}

    def _after_bump(self, env: EnvironmentConfig, records: list[EventRecord], result: Any) -> None:
        records = [self.store.get(r.id) or r for r in records]  # correlation may have been linked meanwhile
        changes = [f"{c.file}: {c.old} → {c.new}" for c in result.changes]
        detail = f"{env.name}: commit {result.commit[:10]} " if result.commit else f"{env.name}: no change "
        detail += "; ".join(changes or [str(s) for s in getattr(result, "skipped", [])])
        for record in records:
            self.store.add_step(record.id, "bump", "done", detail, environment=env.name,
                                commit=result.commit or "")
            if record.correlation_id and record.correlation_id != record.id:
                self.store.add_step(record.correlation_id, "bump", "done", detail, environment=env.name)
            self._finish(record.id, "done", detail)
        if result.commit or getattr(result, "already_applied", False):  # redelivered after its push landed
            self.request_sync(env.name, *[r.correlation_id or r.id for r in records])

    # -- sync --------------------------------------------------------------------------
    def request_sync(self, env_name: str, *event_ids: str) -> None:
        if event_ids:  # recorded before the request counter moves, so the sync that covers it reports to it
            self.r.sadd(f"shipline:sync:events:{env_name}", *event_ids)
        number = self.r.incr(f"shipline:sync:req:{env_name}")
        self.enqueue(QUEUE_SYNC, "sync_env", env_name, str(number))

    def sync(self, env_name: str, request: int) -> dict[str, Any]:
        env = self.config.environment(env_name)
        with self.lock(f"sync:{env.name}"):
            done = int(self.r.get(f"shipline:sync:done:{env.name}") or 0)
            if done >= request:
                return {"coalesced": True}
            upto = int(self.r.get(f"shipline:sync:req:{env.name}") or request)
            event_ids = list(self.r.smembers(f"shipline:sync:events:{env.name}"))
            try:
                result = self._sync_now(env)
            finally:  # the stored result, success or SyncFailed: lead time and notifications
                self._synced(env, event_ids)
            self.r.set(f"shipline:sync:done:{env.name}", upto)
            if event_ids:
                self.r.srem(f"shipline:sync:events:{env.name}", *event_ids)
        for event_id in event_ids:
            if not self._first_report(env.name, event_id, result.get("revision", "")):
                continue  # a retried route asked again for a revision this event already got
            self.store.add_step(event_id, "sync", result["health"], result.get("summary", ""),
                                environment=env.name, revision=result.get("revision", ""))
            record = self.store.get(event_id)
            if record is not None and record.kind == "git_pushed" and record.status == "running":
                self._finish(event_id, "done", result.get("summary", ""))  # a manifests push: sync was its job
        if result.get("health") == "Healthy":
            self.promote_followers(env, result)
        return result

    def promote_followers(self, env: EnvironmentConfig, result: dict[str, Any]) -> list[str]:
        """Environments that follow ``env`` get its images once it is synced and Healthy."""
        created = []
        for follower in (e for e in self.config.environments if e.follows == env.name):
            wanted = {normalize_image(i.image) for i in follower.images}
            for running in (ImageRef.parse(str(ref)) for ref in result.get("images", [])):
                tag = running.tag
                if not tag or normalize_image(running.name) not in wanted:
                    continue
                event = ImagePushed(registry=running.host, repository=running.repository, tag=tag, digest="",
                                    delivery_id=f"follow:{env.name}", source="shipline")
                record = EventRecord(id=new_event_id(), source="shipline", receiver="follow", kind=event.kind,
                                     event=event_to_dict(event), event_type=f"promote:{follower.name}")
                record.correlation_id = record.id
                if self._submit(record, f"follow:{follower.name}:{event.image}:{tag}") is None:
                    created.append(record.id)  # else: this tag was promoted already
        return created

    def _first_report(self, env_name: str, event_id: str, revision: str) -> bool:
        """True once per (environment, event, revision): a ``process_event`` retried after Redis
        failed mid-way requests the same sync twice; the event still gets one sync step."""
        key = f"shipline:sync:reported:{env_name}:{event_id}:{revision}"
        return bool(self.r.set(key, "1", nx=True, ex=self.config.redis.dedupe_ttl_seconds))

    def _sync_now(self, env: EnvironmentConfig) -> dict[str, Any]:
        from service.syncrun import sync_target

        started = time.monotonic()
        targets = TargetStatusStore(self.r)
        try:
            result = sync_target(env, self.state_dir)
        except Exception as exc:
            _observe("sync", started, {"status": "error"})
            targets.put(env.name, {**targets.get(env.name), "health": "SyncFailed",
                                   "reason": f"{type(exc).__name__}: {exc}"[:2000], "last_sync": time.time()})
            raise
        _observe("sync", started, {"status": result["health"]})
        targets.put(env.name, result)
        return result

    def _synced(self, env: EnvironmentConfig, event_ids: list[str]) -> None:
        from service.metrics import observe_lead_time

        status = TargetStatusStore(self.r).get(env.name)
        records = [r for r in (self.store.get(i) for i in event_ids) if r is not None]
        correlation_ids = sorted({r.correlation_id or r.id for r in records})
        if status.get("health") == "Healthy":
            observe_lead_time(self.store, env.name, correlation_ids)
        notify.synced(self.config, self.r, env, status, sorted(event_ids), correlation_ids)

    # -- failures ----------------------------------------------------------------------
    def give_up(self, actor: str, args: tuple[str, ...], error: BaseException) -> list[str]:
        """No retry is left: every event the job carried ends ``failed`` with the error, visibly."""
        reason = f"{type(error).__name__}: {error}"
        if actor in ("process_event", "build_repo"):
            event_ids = list(args[:1])
        elif actor == "bump_env":
            key = f"shipline:bump:pending:{args[0]}"
            event_ids = sorted(self.r.smembers(key))
            if event_ids:
                self.r.srem(key, *event_ids)
        elif actor == "sync_env":
            event_ids = sorted(self.r.smembers(f"shipline:sync:events:{args[0]}"))
        else:
            event_ids = []
        stage = STAGE_OF_ACTOR.get(actor, actor)
        where = {"environment": args[0]} if stage in ("bump", "sync") else {}
        for event_id in event_ids:
            self.store.add_step(event_id, stage, "failed", reason, **where)
            if stage != "sync":  # a sync failure is the environment's state; the event itself was delivered
                self._finish(event_id, "failed", reason)
        return event_ids

    # -- helpers -----------------------------------------------------------------------
    def _record(self, event_id: str) -> EventRecord:
        record = self.store.get(event_id)
        if record is None:
            from handlers.errors import PermanentError

            raise PermanentError(f"event {event_id} is not in the store (expired or never recorded)")
        return record

    def _finish(self, event_id: str, status: str, outcome: str) -> None:
        self.store.set_status(event_id, status, outcome)


@contextlib.contextmanager
def leased_lock(r: Any, key: str) -> Iterator[Any]:
    """A Redis lock held with a short lease that a thread renews while the holder is alive."""
    lock = r.lock(key, timeout=LOCK_TIMEOUT_SECONDS, blocking_timeout=LOCK_WAIT_SECONDS, thread_local=False)
    if not lock.acquire():
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


def _update(image_update: Any, env: EnvironmentConfig, event: Any) -> Any:
    policy = next((i.policy_name for i in env.images if same_image(i.image, event.image)), None)
    return image_update(image=event.image, tag=event.tag, digest=event.digest, policy_name=policy)


def _observe(stage: str, started: float, result: dict[str, Any]) -> None:
    from service.metrics import STAGE_SECONDS

    STAGE_SECONDS.labels(stage=stage, outcome=str(result.get("status", "done"))).observe(time.monotonic() - started)
