"""A release is one thing: the images one push builds are bumped together, once the build ends.

While a push's build runs, its repo's images are *open* for that release (``shipline:building:
<image>`` → the release's correlation id, with a lease as long as the build may take). An image
event for an open image — the registry's notification of a tag the build just pushed — is
*held* under the release instead of going to the bump at once. When the build ends (built,
re-tagged, failed or superseded), the release *closes*: its held events and the images it emitted
go to each environment's bump together, so every environment gets one commit listing every
change, and one sync. A release whose build never reports back (its worker died for good) is
closed by the reconciler once its lease passes: late, never lost.

A manifests commit Shipline pushes is remembered (``shipline:commit:<sha>``), so the forge's
webhook for it is shown under the release that made it, not as a release of its own.
"""

from __future__ import annotations

import json
import time
from typing import Any

from handlers.images import normalize_image

OPEN = "shipline:releases:open"
GRACE_SECONDS = 60
"""Added to the build timeout: the lease of an open release."""


def _building(image: str) -> str:
    return f"shipline:building:{normalize_image(image)}"


def _held(correlation: str) -> str:
    return f"shipline:release:{correlation}:held"


class Releases:
    def __init__(self, r: Any, lease_seconds: float, ttl_seconds: int) -> None:
        self.r = r
        self.lease = lease_seconds + GRACE_SECONDS
        self.ttl = ttl_seconds

    def open(self, correlation: str, images: list[str]) -> None:
        pipe = self.r.pipeline(transaction=True)
        for image in images:
            pipe.set(_building(image), correlation, ex=int(self.lease))
        pipe.hset(f"shipline:release:{correlation}", mapping={"images": json.dumps(images)})
        pipe.expire(f"shipline:release:{correlation}", self.ttl)
        pipe.zadd(OPEN, {correlation: time.time() + self.lease})
        pipe.execute()

    def building(self, image: str) -> str | None:
        """The open release ``image`` belongs to, if any."""
        value = self.r.get(_building(image))
        return str(value) if value else None

    def hold(self, correlation: str, event_id: str) -> None:
        self.r.sadd(_held(correlation), event_id)
        self.r.expire(_held(correlation), self.ttl)

    def close(self, correlation: str) -> list[str]:
        """End the release: its images are no longer open; the events it held, to bump now."""
        raw = self.r.hget(f"shipline:release:{correlation}", "images")
        pipe = self.r.pipeline(transaction=True)
        for image in json.loads(raw) if raw else []:
            key = _building(image)
            pipe.eval("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end "
                      "return 0", 1, key, correlation)
        pipe.smembers(_held(correlation))
        pipe.delete(_held(correlation))
        pipe.zrem(OPEN, correlation)
        results = pipe.execute()
        return sorted(results[-3])

    def overdue(self, now: float | None = None) -> list[str]:
        """Open releases whose lease passed (their build never reported back)."""
        return [str(c) for c in self.r.zrangebyscore(OPEN, 0, now or time.time())]

    # -- Shipline's own manifests commits -------------------------------------------------
    def remember_commit(self, sha: str, correlations: list[str], environment: str) -> None:
        self.r.set(f"shipline:commit:{sha}", json.dumps({"correlations": correlations, "environment": environment}),
                   ex=self.ttl)

    def commit(self, sha: str) -> dict[str, Any] | None:
        raw = self.r.get(f"shipline:commit:{sha}")
        return json.loads(raw) if raw else None
