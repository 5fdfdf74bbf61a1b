"""Counting from outside Shipline: what the senders got back, what the receiver recorded, and where
the work lands (the Git remote, the registry's storage, the apiserver's audit log).

Nothing here reads Shipline's own step records: those are written once by design, so they could
not show a duplicate. A ``Baseline`` taken before a fault lets a scenario count only its own work.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from service.store import FINAL_STATUSES, PREFIX

TRAILER_EVENT = "Shipline-Event"
TRAILER_ENVIRONMENT = "Shipline-Environment"
DIGEST_ANNOTATION = "shipline.dev/digest"
INVENTORY_PREFIX = "shipline-inventory-"


@dataclass
class Ledger:
    """What the test's senders did and got back, kept under a lock (senders are threads)."""

    deliveries: int = 0
    requests: int = 0
    statuses: list[int] = field(default_factory=list)
    answered: set[str] = field(default_factory=set)
    delivery_ids: set[str] = field(default_factory=set)
    """Provider delivery ids sent, to find records whose answer never arrived."""
    shas: set[str] = field(default_factory=set)
    """Commits pushed for real (the git server's hook delivers those)."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def sent(self, delivery_id: str) -> None:
        with self.lock:
            self.deliveries += 1
            self.delivery_ids.add(delivery_id)

    def pushed(self, sha: str) -> None:
        with self.lock:
            self.deliveries += 1
            self.shas.add(sha)

    def answer(self, status: int, body: dict[str, Any]) -> None:
        with self.lock:
            self.requests += 1
            self.statuses.append(status)
            event_id = (body.get("event_id") or body.get("duplicate")) if 200 <= status < 300 else None
            if event_id:
                self.answered.add(str(event_id))


@dataclass(frozen=True)
class Record:
    id: str
    status: str
    delivery_id: str
    after: str
    correlation_id: str


def records_since(r: redis.Redis, since: float) -> list[Record]:
    """Every event the receiver (or Shipline itself) recorded at or after ``since`` (wall clock)."""
    ids = r.zrangebyscore(PREFIX + "events", since, "+inf")
    pipe = r.pipeline(transaction=False)
    for event_id in ids:
        pipe.hmget(PREFIX + "event:" + event_id, "data", "status")
    out = []
    for event_id, (data, status) in zip(ids, pipe.execute(), strict=True):
        if data is None:
            continue
        stored = json.loads(data)
        out.append(Record(event_id, status or "", stored.get("delivery_id", ""),
                          (stored.get("event") or {}).get("after", ""), stored.get("correlation_id", "")))
    return out


def statuses(r: redis.Redis, ids: set[str]) -> dict[str, str]:
    """Status per id ('' when the record is missing)."""
    ordered = sorted(ids)
    pipe = r.pipeline(transaction=False)
    for event_id in ordered:
        pipe.hget(PREFIX + "event:" + event_id, "status")
    return {i: s or "" for i, s in zip(ordered, pipe.execute(), strict=True)}


@dataclass(frozen=True)
class Accepted:
    ids: frozenset[str]
    """Accepted ids: answered 2xx, or recorded for a delivery of ours whose answer never arrived."""
    unanswered: int
    follow_ups: dict[str, frozenset[str]]
    """Per accepted id, the events Shipline made for it (its built images: same correlation id)."""


def accepted(r: redis.Redis, ledger: Ledger, since: float) -> Accepted:
    records = records_since(r, since)
    posted = {rec.id for rec in records if rec.delivery_id in ledger.delivery_ids}
    pushed = {rec.id for rec in records if rec.after in ledger.shas}  # the git server's hook got the answer
    ids = frozenset(ledger.answered | posted | pushed)
    follow_ups: dict[str, set[str]] = {i: set() for i in ids}
    for rec in records:
        if rec.correlation_id in follow_ups and rec.id not in ids:
            follow_ups[rec.correlation_id].add(rec.id)
    return Accepted(ids, len(posted - ledger.answered), {k: frozenset(v) for k, v in follow_ups.items()})


def unfinished(r: redis.Redis, batch: Accepted) -> set[str]:
    """Accepted ids whose record, or one of their follow-ups' records, is not in a final state."""
    every = set(batch.ids).union(*batch.follow_ups.values()) if batch.follow_ups else set(batch.ids)
    state = statuses(r, every)
    return {i for i in batch.ids
            if state[i] not in FINAL_STATUSES or any(state[f] not in FINAL_STATUSES for f in batch.follow_ups[i])}


# -- where work lands ----------------------------------------------------------------------


def commits_per_event(bare: Path, ref: str = "main") -> Counter[tuple[str, str]]:
    """Commits per (event, environment) trailer pair in a bare repo's branch."""
    fmt = (f"%(trailers:key={TRAILER_ENVIRONMENT},valueonly,separator=%x1f)%x1e"
           f"%(trailers:key={TRAILER_EVENT},valueonly,separator=%x1f)%x1d")
    out = subprocess.run(["git", "-C", str(bare), "log", ref, f"--format={fmt}"], check=True,
                         capture_output=True, text=True).stdout
    pairs: Counter[tuple[str, str]] = Counter()
    for entry in out.split("\x1d"):
        env, _, events = entry.strip().partition("\x1e")
        for event in filter(None, (e.strip() for e in events.split("\x1f"))):
            pairs[(event, env.strip())] += 1
    return pairs


def tag_digests(registry_data: Path, repositories: list[str]) -> dict[str, set[str]]:
    """``repository:tag`` → every digest the tag ever pointed to, from the registry's storage."""
    out: dict[str, set[str]] = {}
    for repo in repositories:
        tags = registry_data / "docker" / "registry" / "v2" / "repositories" / repo / "_manifests" / "tags"
        for tag in tags.iterdir() if tags.is_dir() else ():
            index = tag / "index" / "sha256"
            out[f"{repo}:{tag.name}"] = {p.name for p in index.iterdir()} if index.is_dir() else set()
    return out


@dataclass(frozen=True)
class Write:
    """One successful, non-dry-run PATCH of an object, from the apiserver's audit log."""

    key: tuple[str, str, str]
    """(resource, namespace, name)"""
    digest: str
    """``shipline.dev/digest`` of the manifest Shipline applied ('' for anyone else's write)."""
    shipline: bool
    offset: int
    """Byte offset of the audit line: orders writes and separates scenarios."""


def writes(audit_log: Path) -> list[Write]:
    """Every successful, non-dry-run PATCH of a namespaced or cluster object (the audit policy of
    ``devstack.kube`` logs PATCHes only), Shipline's and anyone else's (a drift edit).
    Shipline's applies of rendered objects carry ``shipline.dev/digest``; its inventory
    ConfigMap, bookkeeping rewritten by every sync that changes something, does not."""
    out: list[Write] = []
    offset = 0
    with audit_log.open("rb") as lines:
        for line in lines:
            offset += len(line)
            try:
                event = json.loads(line)
            except ValueError:  # the last line while the apiserver writes it (or was killed writing it)
                continue
            uri = event.get("requestURI", "")
            code = (event.get("responseStatus") or {}).get("code", 0)
            if event.get("verb") != "patch" or "dryRun=" in uri or not 200 <= code < 300:
                continue
            ref = event.get("objectRef") or {}
            if ref.get("subresource") == "status":
                continue  # controllers reporting status: not a write of the object's spec
            meta = (event.get("requestObject") or {}).get("metadata") or {}
            digest = str((meta.get("annotations") or {}).get(DIGEST_ANNOTATION, ""))
            key = (ref.get("resource", ""), ref.get("namespace", ""), ref.get("name", ""))
            out.append(Write(key, digest, "fieldManager=shipline" in uri, offset))
    return out


def applies(audit_log: Path) -> list[Write]:
    """Shipline's applies of rendered objects (those carry their manifest's digest)."""
    return [w for w in writes(audit_log) if w.shipline and w.digest] if audit_log.exists() else []


def repeated_applies(every: list[Write], since: int) -> list[Write]:
    """Applies after byte ``since`` of the audit log that wrote an object exactly as Shipline's
    previous write of it did (same manifest digest) with no one else writing it in between: work
    done twice. A re-apply after someone else's write (drift repair) or of a new manifest is not."""
    last: dict[tuple[str, str, str], Write] = {}
    out = []
    for write in every:
        before = last.get(write.key)
        if (write.offset > since and write.shipline and write.digest and before is not None
                and before.shipline and before.digest == write.digest):
            out.append(write)
        if write.shipline and not write.digest:
            continue  # Shipline's own bookkeeping (the inventory): not a write of a rendered object
        last[write.key] = write
    return out


@dataclass(frozen=True)
class Baseline:
    """Where things stood before a scenario: its window starts here."""

    started: float
    audit_offset: int
    tags: dict[str, set[str]]

    @classmethod
    def take(cls, audit_log: Path, registry_data: Path, repositories: list[str]) -> Baseline:
        offset = audit_log.stat().st_size if audit_log.exists() else 0
        return cls(time.time(), offset, tag_digests(registry_data, repositories))


@dataclass(frozen=True)
class Duplicates:
    git: int
    registry: int
    cluster: int
    applies: int
    """Applies of this scenario (to say the audit log saw the work at all)."""

    @property
    def total(self) -> int:
        return self.git + self.registry + self.cluster

    def note(self) -> str:
        return f"dup git {self.git}/registry {self.registry}/cluster {self.cluster}; {self.applies} applies"


def duplicates(baseline: Baseline, *, bare: Path, events: set[str], audit_log: Path, registry_data: Path,
               repositories: list[str]) -> Duplicates:
    """Work done twice since ``baseline``: a second commit for an (event, environment) of ours, a
    tag that got a second digest, an object applied again with the manifest it already had from
    Shipline (``repeated_applies``)."""
    git = sum(n - 1 for (event, _), n in commits_per_event(bare).items() if event in events and n > 1)
    registry = 0
    for tag, digests in tag_digests(registry_data, repositories).items():
        added = len(digests - baseline.tags.get(tag, set()))
        registry += added if tag in baseline.tags else max(0, added - 1)
    every = writes(audit_log) if audit_log.exists() else []
    mine = [w for w in every if w.offset > baseline.audit_offset and w.shipline and w.digest]
    cluster = len(repeated_applies(every, baseline.audit_offset))
    return Duplicates(git, registry, cluster, len(mine))
