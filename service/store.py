"""The event log in Redis: each accepted delivery, its normalized event, and what became of it.

Keys (prefix ``shipline:``):
- ``event:<id>`` hash: ``data`` (JSON of the delivery and event), ``status``, ``outcome``, ``updated``
- ``event:<id>:steps`` list of JSON steps (stage, status, detail, at): the release timeline
- ``events`` sorted set of ids by receive time
- ``events:final`` the ids of ``events`` in a final state; retention trims the oldest of these only,
  so an event whose work is still queued is never trimmed (the backlog is the difference)
- ``dedupe:<key>`` → event id, with a TTL: provider delivery ids and semantic keys

``AsyncEventLog`` is the receiver's hand-off (asyncio client, on the event loop); ``EventStore``
is everyone else's (workers, API, CLI), synchronous.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import hiredis
import orjson
import redis
import redis.asyncio

from service.chunks import chunks

PREFIX = "shipline:"
STATUSES = ("received", "enqueued", "running", "done", "failed", "ignored", "superseded")
FINAL_STATUSES = frozenset({"done", "failed", "ignored", "superseded"})
"""Events in these states are finished: retention may trim them (and only them)."""
TRIM_BATCH = 100
"""At most this many records trimmed per call; each call adds at most one, so the log keeps up."""
READ_CHUNK = 1000
"""Events read per round trip by ``EventStore.heads``, ``facts`` and ``records``."""
REFUSED_KEY = PREFIX + "refused:backlog"
"""How many deliveries the receivers refused with 503 because the backlog was at its cap."""
ASYNC_POOL_SIZE = 64
"""Connections of the receiver's asyncio client: more in-flight hand-offs share each AOF fsync."""


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


# Retention keeps the newest ``retention`` events that reached a final state and trims older ones
# (only those): ``events:final`` holds their ids, scored by receive time. Counting finished events
# only, not all records, matters under a backlog: counted against every record, an event that
# finished while more than ``retention`` others were queued was trimmed at once, so nobody could
# read what became of it. Bounded per call (``TRIM_BATCH``) so no call is slow; every
# accept and every final status runs it, so the log converges to ``retention`` records plus the
# unprocessed ones. Inside one script, two trims cannot both count the same excess: no over-trim.
TRIM_LUA_BODY = """
local function trim(events, final, prefix, retention, batch)
  local excess = redis.call('zcard', final) - retention
  if excess <= 0 then return 0 end
  local old = redis.call('zrange', final, 0, math.min(excess, batch) - 1)
  for _, id in ipairs(old) do
    redis.call('del', prefix .. id, prefix .. id .. ':steps')
    redis.call('zrem', events, id)
  end
  if #old > 0 then redis.call('zrem', final, unpack(old)) end
  return #old
end
"""

# The receiver's hand-off, atomic and in one round trip (so one AOF fsync per delivery): refuse
# when a dedupe key is held (``duplicate``) or the unprocessed backlog is at its cap (``backlog``);
# else take the dedupe keys, record the event, put the dramatiq message on its queue (dramatiq's
# own layout: HSET <queue>.msgs id data; RPUSH <queue> id), wake an idle consumer, mark it
# enqueued, add the timeline step, and trim what retention allows. No "claimed but not enqueued"
# state exists to recover from.
ACCEPT_LUA = TRIM_LUA_BODY + """
local event_id, ttl, nkeys = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local a = nkeys
for i = 1, nkeys do
  local holder = redis.call('get', KEYS[i])
  if holder and holder ~= event_id then return {'duplicate', holder} end
end
local backlog = redis.call('zcard', KEYS[a + 2]) - redis.call('zcard', KEYS[a + 7])
if backlog >= tonumber(ARGV[11]) then return {'backlog', tostring(backlog)} end
for i = 1, nkeys do redis.call('set', KEYS[i], event_id, 'EX', ttl) end
redis.call('hset', KEYS[a + 1], 'data', ARGV[4], 'status', 'enqueued', 'outcome', '', 'updated', ARGV[5])
redis.call('zadd', KEYS[a + 2], ARGV[6], event_id)
redis.call('hset', KEYS[a + 3], ARGV[7], ARGV[8])
redis.call('rpush', KEYS[a + 4], ARGV[7])
redis.call('rpush', KEYS[a + 5], ARGV[9])
redis.call('publish', KEYS[a + 6], ARGV[10])
redis.call('publish', KEYS[a + 8], '')
trim(KEYS[a + 2], KEYS[a + 7], ARGV[12], tonumber(ARGV[13]), tonumber(ARGV[14]))
return {'accepted', tostring(backlog + 1)}
"""

# A status change: a final one makes the event trimmable (and trims), any other one takes it
# back out of the final set (a retried or replayed route is work in progress again).
STATUS_LUA = TRIM_LUA_BODY + """
if redis.call('exists', KEYS[1]) == 0 then return 0 end
redis.call('hset', KEYS[1], unpack(ARGV, 6))
if ARGV[1] == '1' then
  local received = redis.call('zscore', KEYS[2], ARGV[2])
  if received then redis.call('zadd', KEYS[3], received, ARGV[2]) end
  trim(KEYS[2], KEYS[3], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]))
else
  redis.call('zrem', KEYS[3], ARGV[2])
end
return 1
"""


@dataclass(frozen=True)
class QueuedMessage:
    """A dramatiq message, encoded, and the Redis keys of its queue."""

    queue_key: str
    id: str
    data: bytes


def wake_channel(queue_key: str) -> str:
    """The pub/sub channel an idle consumer of ``queue_key`` waits on between its fetches: a new
    message there wakes it at once instead of at its next poll (a hint only: polling stays)."""
    return queue_key + ".wake"


@dataclass(frozen=True)
class Accepted:
    """The hand-off's verdict: ``accepted`` (value: the backlog after it), ``duplicate`` (value:
    the holder's event id) or ``backlog`` (refused: value is the unprocessed backlog)."""

    verdict: str
    value: str


@dataclass(frozen=True)
class Retention:
    """How much of the event log is kept: ``records`` finished events, at most ``max_backlog``
    unfinished ones (the receiver refuses past it), dedupe keys for ``dedupe_ttl`` seconds."""

    records: int = 10_000
    max_backlog: int = 250_000
    dedupe_ttl: int = 7 * 86400


def _accept_call(record: EventRecord, keys: list[str], queued: QueuedMessage, step: dict[str, Any],
                 retention: Retention) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of ``ACCEPT_LUA`` for one delivery."""
    step = {**step, "at": time.time()}
    event_key = PREFIX + "event:" + record.id
    redis_keys = [PREFIX + "dedupe:" + k for k in keys] + [
        event_key, PREFIX + "events", queued.queue_key + ".msgs", queued.queue_key, event_key + ":steps",
        PREFIX + "updates", PREFIX + "events:final", wake_channel(queued.queue_key)]
    args = [record.id, retention.dedupe_ttl, len(keys), orjson.dumps(record.stored_fields()), time.time(),
            record.received_at, queued.id, queued.data, orjson.dumps(step), orjson.dumps({"event": record.id, **step}),
            retention.max_backlog, PREFIX + "event:", retention.records, TRIM_BATCH]
    return redis_keys, args


class _CPackedConnection(redis.asyncio.Connection):
    """redis-py's asyncio packer re-joins a growing buffer once per argument, quadratic in the
    command's size: 160 µs of the receiver's ~1 ms per delivery went into packing the hand-off
    (profiled). hiredis packs the same RESP bytes in C."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str) and " " in args[0]:  # e.g. "SCRIPT LOAD": one word per argument
            args = (*args[0].split(), *args[1:])
        return [hiredis.pack_command(args)]


class AsyncEventLog:
    """The receiver's side of the event log: the atomic hand-off on the ``redis`` asyncio client
    (no thread per delivery), and the backlog for ``/readyz`` and metrics.

    Hand-offs are group-committed: those that arrive while ``MAX_IN_FLIGHT`` batches are already
    on their way wait and leave together as one pipeline of ``EVALSHA`` calls (one write, one
    read, one AOF fsync for the lot). Each call stays its own atomic script and each delivery
    gets its own verdict; a delivery is answered only once Redis has answered its call."""

    MAX_IN_FLIGHT = 4

    def __init__(self, url: str, retention: Retention) -> None:
        self.url = url
        self.retention = retention
        self._client: redis.asyncio.Redis | None = None
        self._sha = hashlib.sha1(ACCEPT_LUA.encode()).hexdigest()  # noqa: S324 - Redis names scripts so
        self._waiting: list[tuple[list[Any], asyncio.Future[Accepted]]] = []
        self._in_flight = 0

    @property
    def client(self) -> redis.asyncio.Redis:
        if self._client is None:  # made on first use, inside the server's event loop
            self._client = redis.asyncio.Redis.from_url(
                self.url, socket_timeout=5, socket_connect_timeout=2, decode_responses=True,
                max_connections=ASYNC_POOL_SIZE, connection_class=_CPackedConnection)
        return self._client

    async def accept(self, record: EventRecord, keys: list[str], queued: QueuedMessage,
                     step: dict[str, Any]) -> Accepted:
        """Dedupe, record and enqueue in one atomic step (see ``ACCEPT_LUA``)."""
        redis_keys, args = _accept_call(record, keys, queued, step, self.retention)
        answer: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        self._waiting.append(([len(redis_keys), *redis_keys, *args], answer))
        if self._in_flight < self.MAX_IN_FLIGHT:
            self._in_flight += 1
            asyncio.get_running_loop().call_soon(self._start_batch)
        return await answer

    def _start_batch(self) -> None:
        batch, self._waiting = self._waiting, []
        if not batch:
            self._in_flight -= 1
            return
        asyncio.get_running_loop().create_task(self._send(batch))

    async def _send(self, batch: list[tuple[list[Any], asyncio.Future[Accepted]]]) -> None:
        try:
            replies = await self._evalsha_all([call for call, _ in batch])
            for (_, answer), reply in zip(batch, replies, strict=True):
                if answer.done():
                    continue
                if isinstance(reply, Exception):
                    answer.set_exception(reply)
                else:
                    answer.set_result(Accepted(str(reply[0]), str(reply[1])))
        except BaseException as exc:  # noqa: BLE001 - every waiter learns why (503 to its sender)
            for _, answer in batch:
                if not answer.done():
                    answer.set_exception(exc if isinstance(exc, Exception) else redis.ConnectionError(str(exc)))
            if not isinstance(exc, Exception):
                raise
        finally:
            self._start_batch()  # the next batch rides on this slot (or the slot is freed)

    async def _evalsha_all(self, calls: list[list[Any]]) -> list[Any]:
        """Run the hand-off script once per call in one pipeline. Calls that met a Redis without
        the script (first use, a restart, ``SCRIPT FLUSH``) did nothing: load it, run those again."""
        replies = await self._pipeline(calls)
        missing = [n for n, reply in enumerate(replies) if isinstance(reply, redis.exceptions.NoScriptError)]
        if missing:
            await self.client.script_load(ACCEPT_LUA)
            for n, reply in zip(missing, await self._pipeline([calls[n] for n in missing]), strict=True):
                replies[n] = reply
        return replies

    async def _pipeline(self, calls: list[list[Any]]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for call in calls:
            pipe.execute_command("EVALSHA", self._sha, *call)
        return list(await pipe.execute(raise_on_error=False))

    async def backlog(self) -> int:
        """Events recorded but not in a final state (queued, running, or waiting for a retry)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.zcard(PREFIX + "events")
        pipe.zcard(PREFIX + "events:final")
        total, final = await pipe.execute()
        return int(total) - int(final)

    async def ping(self) -> bool:
        return bool(await self.client.ping())

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class EventStore:
    """The workers' and the API's side of the event log (synchronous ``redis`` client)."""

    def __init__(self, client: redis.Redis, *, retention: Retention | None = None):
        self.r = client
        self.retention = retention or Retention()
        self._status_script = client.register_script(STATUS_LUA)

    @property
    def dedupe_ttl(self) -> int:
        return self.retention.dedupe_ttl

    @classmethod
    def from_url(cls, url: str, *, retention: Retention | None = None) -> EventStore:
        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2,
                                      decode_responses=True)
        return cls(client, retention=retention)

    def backlog(self) -> int:
        pipe = self.r.pipeline(transaction=False)
        pipe.zcard(PREFIX + "events")
        pipe.zcard(PREFIX + "events:final")
        total, final = pipe.execute()
        return int(total) - int(final)

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

    def heads(self, event_ids: list[str]) -> list[tuple[str, str] | None]:
        """Each event's ``(kind, status)``, None for one not stored."""
        return [None if data is None else (str(json.loads(data).get("kind", "")), status or "")
                for data, status in self._fields(event_ids, "data", "status")]

    def facts(self, event_ids: list[str]) -> list[dict[str, Any] | None]:
        """Each event's stored fields (``EventRecord.stored_fields``) without its steps, None for
        one not stored."""
        return [None if data is None else json.loads(data) for (data,) in self._fields(event_ids, "data")]

    def records(self, event_ids: list[str]) -> list[EventRecord]:
        """The stored events among ``event_ids``, in order, without their steps (``get`` reads
        those too, one event at a time)."""
        return [EventRecord(**json.loads(data), status=status or "", outcome=outcome or "")
                for data, status, outcome in self._fields(event_ids, "data", "status", "outcome") if data is not None]

    def _fields(self, event_ids: list[str], *fields: str) -> list[list[str | None]]:
        """``fields`` of each event's hash, ``READ_CHUNK`` events per round trip: a sync covers
        tens of thousands of events under a backlog, and one read each made its report outlast
        the time between faults."""
        rows: list[list[str | None]] = []
        for chunk in chunks(event_ids, READ_CHUNK):
            with self.r.pipeline(transaction=False) as pipe:
                for event_id in chunk:
                    pipe.hmget(PREFIX + "event:" + event_id, *fields)
                rows += pipe.execute()
        return rows

    def set_status(self, event_id: str, status: str, outcome: str | None = None, *, pipe: Any = None) -> None:
        """A final status makes the event trimmable by retention (and trims); any other takes it back.
        Given ``pipe`` (a Redis pipeline), it joins that pipeline instead of running now."""
        fields: list[Any] = ["status", status, "updated", time.time()]
        if outcome is not None:
            fields += ["outcome", outcome[-4000:]]
        keys = [PREFIX + "event:" + event_id, PREFIX + "events", PREFIX + "events:final"]
        args = ["1" if status in FINAL_STATUSES else "0", event_id, PREFIX + "event:", self.retention.records,
                TRIM_BATCH, *fields]
        self._status_script(keys=keys, args=args, client=pipe)

    def add_step_to(self, pipe: Any, event_id: str, stage: str, status: str, detail: str = "", **extra: Any) -> None:
        """``add_step`` as part of ``pipe`` (a Redis pipeline)."""
        self._step(pipe, event_id, stage, status, detail, **extra)

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
