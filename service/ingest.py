"""The receiver's work after the body is read: verify, normalize, route, dedupe, record, enqueue.

Synchronous and free of HTTP: the app runs ``Ingest.accept`` in a worker thread, and the answer
it returns maps one-to-one onto an HTTP status. A 2xx ``Accepted`` means the record and the queue
message are both in Redis (AOF, fsync always).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis
from dramatiq.brokers.redis import RedisBroker

from handlers.errors import ConfigError
from handlers.events import Event, event_to_dict
from handlers.sources import get_source
from handlers.sources.base import Parsed, Secrets
from service.broker import QUEUE_EVENTS, message
from service.config import Config, ReceiverConfig
from service.store import EventRecord, EventStore, QueuedMessage, new_event_id

SENSITIVE_HEADER_PARTS = ("authorization", "token", "secret", "cookie", "signature", "api-key")
PATH_TOKEN_HEADER = "x-shipline-path-token"


class Unavailable(Exception):
    """Redis cannot take the event: answer 503 so the sender retries."""


@dataclass
class Answer:
    status: int
    body: dict[str, Any] = field(default_factory=dict)


def secrets_for(receiver: ReceiverConfig) -> Secrets:
    """Resolve a receiver's secrets; a path-token receiver verifies with its token."""
    def value(ref: Any) -> str | None:
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
    def __init__(self, config: Config, store: EventStore, broker: RedisBroker) -> None:
        self.config = config
        self.store = store
        self.broker = broker

    def accept(self, receiver: ReceiverConfig, headers: Mapping[str, str], body: bytes) -> Answer:
        """Verify and normalize (raises ``Rejected``), then record and enqueue each event."""
        source = get_source(receiver.source)
        secrets = secrets_for(receiver)
        source.verify(headers, body, secrets)
        parsed = source.parse(headers, body)
        if parsed.ping:
            return Answer(200, {"pong": True})
        if not parsed.events:
            return Answer(202, {"ignored": parsed.ignored or "no actionable event"})
        results = [self._one(receiver, parsed, event, headers, body, secrets) for event in parsed.events]
        return _combine(results)

    def _one(self, receiver: ReceiverConfig, parsed: Parsed, event: Event,
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
        return self.submit(record, dedupe_keys(receiver, parsed, event))

    def submit(self, record: EventRecord, keys: list[str]) -> Answer:
        """Dedupe, record, enqueue: the durable hand-off. Raises ``Unavailable`` if Redis is down."""
        queued = encode_for_queue(self.broker, record.id)
        step = {"stage": "delivery", "status": "accepted",
                "detail": f"{record.source}/{record.receiver} {record.event_type}".strip()}
        try:
            holder = self.store.accept(record, keys, queued, step)
        except (redis.RedisError, OSError) as exc:
            raise Unavailable(f"redis unavailable: {type(exc).__name__}") from exc
        if holder is not None:
            return Answer(200, {"duplicate": holder})
        return Answer(202, {"event_id": record.id})


def encode_for_queue(broker: RedisBroker, event_id: str) -> QueuedMessage:
    """``process_event(event_id)`` encoded as dramatiq's Redis broker would enqueue it."""
    msg = message(QUEUE_EVENTS, "process_event", event_id).copy(options={"redis_message_id": str(uuid.uuid4())})
    return QueuedMessage(queue_key=f"{broker.namespace}:{QUEUE_EVENTS}", id=msg.options["redis_message_id"],
                         data=msg.encode())


def dedupe_keys(receiver: ReceiverConfig, parsed: Parsed, event: Event) -> list[str]:
    keys = [f"sem:{event.semantic_key}"]
    if parsed.delivery_id:
        keys.insert(0, f"dlv:{receiver.source}:{receiver.name}:{parsed.delivery_id}:{event.semantic_key}")
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
