"""The drift flap guard: when something keeps changing an environment back (an autoscaler, an
operator, a person), correcting it forever is a fight. Past ``drift_flap.max_corrections``
corrections within ``drift_flap.window_seconds``, the environment's drift is only reported until
the window passes or its Git revision changes, and the status says why."""

from __future__ import annotations

import json
import time
from typing import Any

from handlers.settings import EnvironmentConfig


def _corrections(env: str) -> str:
    return f"shipline:drift:corrections:{env}"


def _paused(env: str) -> str:
    return f"shipline:drift:paused:{env}"


class FlapGuard:
    def __init__(self, r: Any) -> None:
        self.r = r

    def paused(self, env: EnvironmentConfig, revision: str) -> str | None:
        """Why correction is paused for ``env`` at ``revision``, or None (a new revision resumes it)."""
        raw = self.r.get(_paused(env.name))
        if not raw:
            return None
        pause = json.loads(raw)
        if pause.get("revision") and revision and pause["revision"] != revision:
            self.r.delete(_paused(env.name), _corrections(env.name))
            return None
        return str(pause["reason"])

    def corrected(self, env: EnvironmentConfig, count: int, revision: str) -> str | None:
        """Record a sync that corrected ``count`` objects; the pause reason when that was one too many."""
        if count <= 0:
            return None
        now, window = time.time(), env.drift_flap.window_seconds
        key = _corrections(env.name)
        pipe = self.r.pipeline(transaction=True)
        pipe.zadd(key, {f"{now}:{revision}": now})
        pipe.zremrangebyscore(key, 0, now - window)
        pipe.zcard(key)
        pipe.expire(key, window)
        seen = int(pipe.execute()[2])
        if seen < env.drift_flap.max_corrections:
            return None
        reason = (f"drift corrected {seen} times in {window}s: correction paused, drift only reported until "
                  f"{time.strftime('%H:%M:%S', time.localtime(now + window))} or a new Git revision")
        self.r.set(_paused(env.name), json.dumps({"reason": reason, "revision": revision}), ex=window)
        return reason
