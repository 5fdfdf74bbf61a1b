"""Per-environment status (revision, images, health, last sync, drift), kept in Redis."""

from __future__ import annotations

import json
import time
from typing import Any

import redis

KEY = "shipline:target:"


class TargetStatusStore:
    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def put(self, name: str, status: dict[str, Any]) -> None:
        self.r.set(KEY + name, json.dumps({**status, "name": name, "updated": time.time()}))

    def get(self, name: str) -> dict[str, Any]:
        raw = self.r.get(KEY + name)
        return json.loads(raw) if raw else {"name": name, "health": "Unknown", "revision": None}

    def all(self, names: list[str]) -> list[dict[str, Any]]:
        return [self.get(name) for name in names]
