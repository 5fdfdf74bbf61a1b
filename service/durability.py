"""Checked at start: can this Redis lose a write the receiver has acknowledged with a 2xx?

A 202 promises the delivery is durable. That holds only if every write reaches the disk before
Redis answers (``appendonly yes`` + ``appendfsync always``) and Redis never evicts keys under
memory pressure (``maxmemory-policy noeviction``). Anything else refuses to start under
``redis.durability: strict`` (the default); ``relaxed`` starts with a warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

from handlers.errors import ConfigError

log = logging.getLogger("shipline.receiver")
REQUIRED = {"appendonly": "yes", "appendfsync": "always", "maxmemory-policy": "noeviction"}
WHY = {
    "appendonly": "without the AOF a restart loses every event and queued message since the last snapshot",
    "appendfsync": "an acknowledged write can sit in the page cache when Redis or the machine dies",
    "maxmemory-policy": "an evicting policy deletes queued messages and records when memory runs out",
}


@dataclass(frozen=True)
class Finding:
    setting: str
    value: str
    wanted: str

    def __str__(self) -> str:
        return (f"{self.setting} is {self.value!r}, needs {self.wanted!r}: {WHY[self.setting]} "
                f"(fix: CONFIG SET {self.setting} {self.wanted}, and the same in redis.conf)")


def findings(settings: dict[str, str]) -> list[Finding]:
    """What in Redis's persistence settings can lose an acknowledged write."""
    return [Finding(key, settings.get(key, "?"), wanted) for key, wanted in REQUIRED.items()
            if settings.get(key) != wanted]


async def check_durability(client: redis.asyncio.Redis, mode: str) -> list[Finding]:
    """Read the settings; raise ``ConfigError`` naming each unsafe one (strict) or log it (relaxed)."""
    try:
        settings: dict[str, str] = {}
        for key in REQUIRED:
            settings.update(await client.config_get(key))
    except redis.ResponseError as exc:  # CONFIG renamed or forbidden (managed Redis)
        if mode == "relaxed":
            log.warning("cannot read Redis persistence settings (%s); durability unchecked", exc)
            return []
        raise ConfigError(f"cannot read Redis persistence settings with CONFIG GET ({exc}); if your Redis "
                          "forbids CONFIG and you know it runs appendonly yes + appendfsync always + "
                          "noeviction, set redis.durability: relaxed") from None
    found = findings(settings)
    if found and mode == "strict":
        raise ConfigError("Redis can lose deliveries Shipline has acknowledged:\n  " + "\n  ".join(map(str, found))
                          + "\n(or accept the risk: redis.durability: relaxed)")
    for finding in found:
        log.warning("redis.durability relaxed: %s", finding)
    return found
