"""The receiver's work after the body is read: verify, normalize, route, dedupe, record, enqueue.

Free of HTTP: the app awaits ``Ingest.accept``, and the answer it returns maps one-to-one onto an
HTTP status. Verification, parsing and routing are CPU work of a few hundred microseconds and run
on the event loop (large bodies go to a thread so one upload cannot stall the others); the
hand-off is one Lua call on the asyncio Redis client. A 2xx ``Accepted`` means the record and the
queue message are both in Redis (AOF, fsync always).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis
from anyio import to_thread

from handlers.errors import ConfigError
from handlers.events import Event, event_to_dict
from handlers.secrets import SecretRef
from handlers.sources import PATH_TOKEN_HEADER, get_source
from handlers.sources.base import Parsed, Secrets
from service import metrics
from service.broker import NAMESPACE, QUEUE_EVENTS
from service.config import Config, ReceiverConfig
from service.store import AsyncEventLog, EventRecord, QueuedMessage, new_event_id

SENSITIVE_HEADER_PARTS = ("authorization", "token", "secret", "cookie", "signature", "api-key")
INLINE_BODY_BYTES = 64 * 1024
"""Bodies up to this size are verified and parsed on the event loop; larger ones in a thread."""
SECRET_TTL_SECONDS = 2.0
"""A resolved secret is re-read after this long, so a rotation (new file content) takes effect."""
BACKLOG_RETRY_AFTER = 30
QUEUE_EVENTS_KEY = f"{NAMESPACE}:{QUEUE_EVENTS}"
log = logging.getLogger("shipline.receiver")


class Unavailable(Exception):
    """Redis cannot take the event: answer 503 so the sender retries."""

    retry_after = 5


class BacklogFull(Unavailable):
    """The unprocessed backlog is at ``redis.max_backlog``: 503 until the workers catch up."""

    retry_after = BACKLOG_RETRY_AFTER


@dataclass
class Answer:
    status: int
    body: dict[str, Any] = field(default_factory=dict)


class SecretCache:
    """Resolved receiver secrets, re-read every ``SECRET_TTL_SECONDS`` (files and env vars are
    cheap to read, but not on every delivery: it was 5 % of the receiver's time)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], tuple[float, Secrets]] = {}

    def get(self, receiver: ReceiverConfig) -> Secrets:
        key = (receiver.source, receiver.name)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < SECRET_TTL_SECONDS:
            return hit[1]
        secrets = secrets_for(receiver)
        self._cache[key] = (now, secrets)
        return secrets


def secrets_for(receiver: ReceiverConfig) -> Secrets:
    """Resolve a receiver's secrets; a path-token receiver verifies with its token."""
    def value(ref: SecretRef | None) -> str | None:
        if ref is None:
            return None
        try:
            return ref.resolve()
        except ConfigError:
            return None  # a receiver whose secret is missing refuses everything

    current = value(receiver.path_token) or value(receiver.secret)
    return Secrets(current=current, previous=value(receiver.previous_secret), header=receiver.header)


def scrub_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: ("***" if any(p in k for p in SENSITIVE_HEADER_PARTS) else v) for k, v in headers.items()}


def scrub_body(body: bytes, secrets: Secrets) -> str:
    text = body.decode("utf-8", errors="replace")
    for secret in (secrets.current, secrets.previous):
        if secret:
            text = text.replace(secret, "***")
    return text


class Ingest:
    def __init__(self, config: Config, log_: AsyncEventLog) -> None:
        self.config = config
        self.events = log_
        self.secrets = SecretCache()

    async def accept(self, receiver: ReceiverConfig, headers: Mapping[str, str], body: bytes) -> Answer:
        """Verify and normalize (raises ``Rejected``), then record and enqueue each event."""
        secrets = self.secrets.get(receiver)
        if len(body) > INLINE_BODY_BYTES:
            parsed = await to_thread.run_sync(_verified, receiver, headers, body, secrets)
        else:
            parsed = _verified(receiver, headers, body, secrets)
        if parsed.ping:
            return Answer(200, {"pong": True})
        if not parsed.events:
            return Answer(202, {"ignored": parsed.ignored or "no actionable event"})
        results = [await self._one(receiver, parsed, event, headers, body, secrets) for event in parsed.events]
        return _combine(results)

    async def _one(self, receiver: ReceiverConfig, parsed: Parsed, event: Event,
                   headers: Mapping[str, str], body: bytes, secrets: Secrets) -> Answer:
        reason = self.config.router.ignore_reason(event)
        if reason is not None:
            return Answer(202, {"ignored": reason})
        record = EventRecord(
            id=new_event_id(), source=receiver.source, receiver=receiver.name, kind=event.kind,
            event=event_to_dict(event), delivery_id=parsed.delivery_id, event_type=parsed.event_type,
            headers=scrub_headers(headers), body=scrub_body(body, secrets),
        )
        record.correlation_id = record.id
        return await self.submit(record, dedupe_keys(receiver, parsed, self.config.router.semantic_key(event)))

    async def submit(self, record: EventRecord, keys: list[str]) -> Answer:
        """Dedupe, record, enqueue: the durable hand-off. Raises ``Unavailable`` if Redis is down
        and ``BacklogFull`` past ``redis.max_backlog``."""
        queued = encode_for_queue(record.id)
        step = {"stage": "delivery", "status": "accepted",
                "detail": f"{record.source}/{record.receiver} {record.event_type}".strip()}
        try:
            verdict = await self.events.accept(record, keys, queued, step)
        except (redis.RedisError, OSError) as exc:
            raise Unavailable(f"redis unavailable: {type(exc).__name__}") from exc
        if verdict.verdict == "duplicate":
            return Answer(200, {"duplicate": verdict.value})
        if verdict.verdict == "backlog":
            metrics.BACKLOG.set(int(verdict.value))
            raise BacklogFull(f"{verdict.value} events are not processed yet (redis.max_backlog "
                              f"{self.config.redis.max_backlog}); retry later")
        metrics.BACKLOG.set(int(verdict.value))
        return Answer(202, {"event_id": record.id})


def _verified(receiver: ReceiverConfig, headers: Mapping[str, str], body: bytes, secrets: Secrets) -> Parsed:
    source = get_source(receiver.source)
    source.verify(headers, body, secrets)
    return source.parse(headers, body)


def encode_for_queue(event_id: str) -> QueuedMessage:
    """``process_event(event_id)`` encoded as dramatiq's Redis broker would enqueue it: the fields
    of ``dramatiq.Message`` as JSON, written directly (building the Message twice and encoding
    it with the stdlib was a tenth of the receiver's own time per delivery, profiled)."""
    redis_id = str(uuid.uuid4())
    data = orjson.dumps({"queue_name": QUEUE_EVENTS, "actor_name": "process_event", "args": [event_id],
                         "kwargs": {}, "options": {"redis_message_id": redis_id},
                         "message_id": str(uuid.uuid4()), "message_timestamp": int(time.time() * 1000)})
    return QueuedMessage(queue_key=QUEUE_EVENTS_KEY, id=redis_id, data=data)


def dedupe_keys(receiver: ReceiverConfig, parsed: Parsed, semantic_key: str) -> list[str]:
    keys = [f"sem:{semantic_key}"]
    if parsed.delivery_id:
        keys.insert(0, f"dlv:{receiver.source}:{receiver.name}:{parsed.delivery_id}:{semantic_key}")
    return keys


def _combine(results: list[Answer]) -> Answer:
    if len(results) == 1:
        return results[0]
    accepted = [r.body["event_id"] for r in results if "event_id" in r.body]
    body: dict[str, Any] = {"event_ids": accepted}
    if accepted:
        body["event_id"] = accepted[0]
    dupes = [r.body["duplicate"] for r in results if "duplicate" in r.body]
    if dupes:
        body["duplicates"] = dupes
    ignored = [r.body["ignored"] for r in results if "ignored" in r.body]
    if ignored:
        body["ignored_events"] = ignored
    if accepted:
        return Answer(202, body)
    if dupes:
        return Answer(200, {"duplicate": dupes[0], **body})
    return Answer(202, {"ignored": "; ".join(ignored), **body})


__all__ = ["PATH_TOKEN_HEADER", "Answer", "BacklogFull", "Ingest", "Unavailable", "dedupe_keys"]
