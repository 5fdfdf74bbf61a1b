"""The event log in Redis: each accepted delivery, its normalized event, and what became of it.

Keys (prefix ``shipline:``):
- ``event:<id>`` hash: ``data`` (JSON of the delivery and event), ``status``, ``outcome``, ``updated``
- ``event:<id>:steps`` list of JSON steps (stage, status, detail, at): the release timeline
- ``events`` sorted set of ids by receive time (retention trims the oldest)
- ``dedupe:<key>`` → event id, with a TTL: provider delivery ids and semantic keys

Synchronous on purpose: the receiver calls it from a worker thread, never on its event loop.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

PREFIX = "shipline:"
STATUSES = ("received", "enqueued", "running", "done", "failed", "ignored", "superseded")


def new_event_id() -> str:
    """Time-ordered and unguessable: hex milliseconds, then randomness."""
    return f"{int(time.time() * 1000):012x}{uuid.uuid4().hex[:12]}"


@dataclass
class EventRecord:
    id: str
    source: str
    receiver: str
    kind: str
    event: dict[str, Any]
    delivery_id: str = ""
    event_type: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    correlation_id: str = ""
    replay_of: str | None = None
    received_at: float = field(default_factory=time.time)
    status: str = "received"
    outcome: str = ""
    steps: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("body")
        data.pop("headers")
        return data


class EventStore:
    def __init__(self, client: redis.Redis, *, retention: int = 10_000, dedupe_ttl: int = 7 * 86400):
        self.r = client
        self.retention = retention
        self.dedupe_ttl = dedupe_ttl

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> EventStore:
        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2,
                                      decode_responses=True)
        return cls(client, **kwargs)

    # -- dedupe --------------------------------------------------------------------------
    def claim(self, keys: list[str], event_id: str) -> str | None:
        """Take every dedupe key for ``event_id``; if one is held, give back the holder's id.

        All keys are tried in one round trip; when one is held by another event, the keys this
        call took are released again and the holder of the first held key is returned."""
        pipe = self.r.pipeline(transaction=False)
        for key in keys:
            pipe.set(PREFIX + "dedupe:" + key, event_id, nx=True, ex=self.dedupe_ttl)
        won = pipe.execute()
        taken = [key for key, ok in zip(keys, won, strict=True) if ok]
        for key, ok in zip(keys, won, strict=True):
            if ok:
                continue
            holder = self.r.get(PREFIX + "dedupe:" + key)
            if holder and holder != event_id:
                self.release(taken)
                return str(holder)
        return None

    def release(self, keys: list[str]) -> None:
        if keys:
            self.r.delete(*(PREFIX + "dedupe:" + k for k in keys))

    # -- records -------------------------------------------------------------------------
    def save(self, record: EventRecord) -> None:
        data = {k: v for k, v in asdict(record).items() if k not in ("status", "outcome", "steps")}
        key = PREFIX + "event:" + record.id
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(key, mapping={"data": json.dumps(data), "status": record.status,
                                "outcome": record.outcome, "updated": time.time()})
        pipe.zadd(PREFIX + "events", {record.id: record.received_at})
        pipe.zcard(PREFIX + "events")
        size = pipe.execute()[-1]
        self._trim(int(size))

    def _trim(self, size: int) -> None:
        excess = size - self.retention
        if excess <= 0:
            return
        old = self.r.zrange(PREFIX + "events", 0, excess - 1)
        pipe = self.r.pipeline(transaction=True)
        for event_id in old:
            pipe.delete(PREFIX + "event:" + event_id, PREFIX + "event:" + event_id + ":steps")
        pipe.zrem(PREFIX + "events", *old)
        pipe.execute()

    def get(self, event_id: str) -> EventRecord | None:
        raw = self.r.hgetall(PREFIX + "event:" + event_id)
        if not raw or "data" not in raw:
            return None
        data = json.loads(raw["data"])
        steps = [json.loads(s) for s in self.r.lrange(PREFIX + "event:" + event_id + ":steps", 0, -1)]
        return EventRecord(**data, status=raw.get("status", ""), outcome=raw.get("outcome", ""),
                           steps=steps)

    def link(self, event_id: str, correlation_id: str) -> None:
        """Tie ``event_id`` into another release's timeline (e.g. the registry's notification of
        an image Shipline itself built); its steps then also land on ``correlation_id``."""
        key = PREFIX + "event:" + event_id
        raw = self.r.hget(key, "data")
        if raw is None:
            return
        data = json.loads(raw)
        data["correlation_id"] = correlation_id
        self.r.hset(key, "data", json.dumps(data))
        for step in self.r.lrange(key + ":steps", 0, -1):
            self.r.rpush(PREFIX + "event:" + correlation_id + ":steps", step)

    def set_status(self, event_id: str, status: str, outcome: str | None = None) -> None:
        mapping: dict[str, Any] = {"status": status, "updated": time.time()}
        if outcome is not None:
            mapping["outcome"] = outcome[-4000:]
        self.r.hset(PREFIX + "event:" + event_id, mapping=mapping)

    def add_step(self, event_id: str, stage: str, status: str, detail: str = "",
                 **extra: Any) -> None:
        pipe = self.r.pipeline(transaction=True)
        self._step(pipe, event_id, stage, status, detail, **extra)
        pipe.execute()

    def set_status_and_step(self, event_id: str, status: str, stage: str, step_status: str,
                            detail: str = "") -> None:
        """``set_status`` then ``add_step``, in one round trip (one MULTI/EXEC)."""
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(PREFIX + "event:" + event_id, mapping={"status": status, "updated": time.time()})
        self._step(pipe, event_id, stage, step_status, detail)
        pipe.execute()

    @staticmethod
    def _step(pipe: Any, event_id: str, stage: str, status: str, detail: str, **extra: Any) -> None:
        step = {"stage": stage, "status": status, "detail": detail[-4000:], "at": time.time(), **extra}
        pipe.rpush(PREFIX + "event:" + event_id + ":steps", json.dumps(step))
        pipe.publish(PREFIX + "updates", json.dumps({"event": event_id, **step}))

    def list(self, *, source: str | None = None, repo: str | None = None,
             status: str | None = None, offset: int = 0, limit: int = 50) -> list[EventRecord]:
        """Newest first, filtered; scans at most the retained window."""
        out: list[EventRecord] = []
        skipped = 0
        for event_id in self.r.zrevrange(PREFIX + "events", 0, -1):
            record = self.get(event_id)
            if record is None or not _matches(record, source, repo, status):
                continue
            if skipped < offset:
                skipped += 1
                continue
            out.append(record)
            if len(out) >= limit:
                break
        return out

    def ping(self) -> bool:
        return bool(self.r.ping())


def _matches(record: EventRecord, source: str | None, repo: str | None, status: str | None) -> bool:
    if source and record.source != source:
        return False
    if status and record.status != status:
        return False
    if repo:
        names = {record.event.get("repo"), record.event.get("repository"),
                 f"{record.event.get('registry')}/{record.event.get('repository')}"}
        return repo in names
    return True
