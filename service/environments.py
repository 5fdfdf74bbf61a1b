"""Per-environment status, kept in Redis: the last sync's result (revision, images, health,
applied/unchanged counts, drift), the drift the watcher saw since, the last rollback, the last
release's lead time; and each worker's cluster-cache state. ``all`` merges them for the API."""

from __future__ import annotations

import json
import time
from typing import Any

import redis

KEY = "shipline:environment:"
DRIFT_KEY = "shipline:environment-drift:"
ROLLBACK_KEY = "shipline:environment-rollback:"
CACHE_KEY = "shipline:cache:"
DRIFT_KEPT = 20
CACHE_STATE_TTL = 30
"""A worker publishes its caches' state every few seconds; a stale entry means no worker holds it."""


class EnvironmentStatusStore:
    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    @staticmethod
    def key(name: str) -> str:
        return KEY + name

    def put(self, name: str, status: dict[str, Any]) -> None:
        self.r.set(self.key(name), json.dumps({**status, "name": name, "updated": time.time()}))

    def get(self, name: str) -> dict[str, Any]:
        return self.decode(name, self.r.get(self.key(name)))

    @staticmethod
    def decode(name: str, raw: str | bytes | None) -> dict[str, Any]:
        """The status stored at ``key(name)`` (``raw``, read by the caller), or an unknown one."""
        return json.loads(raw) if raw else {"name": name, "health": "Unknown", "revision": None}

    def note_drift(self, name: str, what: str) -> None:
        """Drift the watcher saw (between syncs): what, and when."""
        pipe = self.r.pipeline(transaction=True)
        pipe.lpush(DRIFT_KEY + name, json.dumps({"at": time.time(), "what": what[:2000]}))
        pipe.ltrim(DRIFT_KEY + name, 0, DRIFT_KEPT - 1)
        pipe.execute()

    def note_rollback(self, name: str, rollback: dict[str, Any]) -> None:
        self.r.set(ROLLBACK_KEY + name, json.dumps({**rollback, "at": rollback.get("at", time.time())}))

    def put_cache(self, cluster: str, state: dict[str, Any]) -> None:
        self.r.set(CACHE_KEY + cluster, json.dumps({**state, "at": time.time()}), ex=CACHE_STATE_TTL)

    def all(self, names: list[str], clusters: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Each environment's status, with its drift seen, last rollback and cluster cache state
        (``clusters``: environment → cluster name)."""
        out = []
        for name in names:
            status = self.get(name)
            status["drift_seen"] = [json.loads(x) for x in self.r.lrange(DRIFT_KEY + name, 0, DRIFT_KEPT - 1)]
            rollback = self.r.get(ROLLBACK_KEY + name)
            status["rollback"] = json.loads(rollback) if rollback else None
            cluster = (clusters or {}).get(name)
            cache = self.r.get(CACHE_KEY + cluster) if cluster else None
            status["cache"] = json.loads(cache) if cache else {"state": "no worker is watching this cluster"}
            out.append(status)
        return out
