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
from dataclasses import asdict, dataclass, field, fields
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

    def stored_fields(self) -> dict[str, Any]:
        """The immutable part, shallow (``dataclasses.asdict`` deep-copies the body: slow on the hot path)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("status", "outcome", "steps")}

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("body")
        data.pop("headers")
        return data


# One atomic script for the receiver's hand-off: take the dedupe keys, record the event, put the
# dramatiq message on its queue (dramatiq's own layout: HSET <queue>.msgs id data; RPUSH <queue> id),
# mark it enqueued and add the timeline step. Atomic, so there is no "claimed but not enqueued"
# state to recover from; one round trip, so one AOF fsync per delivery.
ACCEPT_LUA = """
local event_id, ttl, nkeys = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 1, nkeys do
  if not redis.call('set', KEYS[i], event_id, 'NX', 'EX', ttl) then
    local holder = redis.call('get', KEYS[i])
    if holder ~= event_id then
      for j = 1, i - 1 do redis.call('del', KEYS[j]) end
      return {'duplicate', holder}
    end
  end
end
local a = nkeys
redis.call('hset', KEYS[a + 1], 'data', ARGV[4], 'status', 'enqueued', 'outcome', '', 'updated', ARGV[5])
redis.call('zadd', KEYS[a + 2], ARGV[6], event_id)
redis.call('hset', KEYS[a + 3], ARGV[7], ARGV[8])
redis.call('rpush', KEYS[a + 4], ARGV[7])
redis.call('rpush', KEYS[a + 5], ARGV[9])
redis.call('publish', KEYS[a + 6], ARGV[10])
return {'accepted', tostring(redis.call('zcard', KEYS[a + 2]))}
"""


@dataclass(frozen=True)
class QueuedMessage:
    """A dramatiq message, encoded, and the Redis keys of its queue."""

    queue_key: str
    id: str
    data: bytes


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

    # -- the receiver's hand-off -----------------------------------------------------------
    def accept(self, record: EventRecord, keys: list[str], queued: QueuedMessage, step: dict[str, Any]) -> str | None:
        """Dedupe, record and enqueue in one atomic step; the holder's id when it is a duplicate."""
        data = record.stored_fields()
        step = {**step, "at": time.time()}
        event_key = PREFIX + "event:" + record.id
        redis_keys = [PREFIX + "dedupe:" + k for k in keys] + [
            event_key, PREFIX + "events", queued.queue_key + ".msgs", queued.queue_key, event_key + ":steps",
            PREFIX + "updates"]
        args = [record.id, self.dedupe_ttl, len(keys), json.dumps(data), time.time(), record.received_at,
                queued.id, queued.data, json.dumps(step), json.dumps({"event": record.id, **step})]
        verdict, value = self._accept_script(keys=redis_keys, args=args)
        if verdict == "duplicate":
            return str(value)
        self._trim(int(value))
        return None

    @property
    def _accept_script(self) -> Any:
        script = getattr(self, "_accept", None)
        if script is None:
            script = self._accept = self.r.register_script(ACCEPT_LUA)
        return script

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
        data = record.stored_fields()
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
