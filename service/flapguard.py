"""The drift flap guard: when something keeps changing an object back (an autoscaler, an operator,
a person), correcting it forever is a fight. Once one object was corrected
``drift_flap.max_corrections`` times within ``drift_flap.window_seconds``, the environment's drift
is only reported until the window passes or its Git revision changes, and the status says why.
Edits of different objects (a person fixing things by hand) are each corrected: no fight there."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

from handlers.settings import EnvironmentConfig


def _corrections(env: str) -> str:
    return f"shipline:drift:corrections:{env}"


def _paused(env: str) -> str:
    return f"shipline:drift:paused:{env}"


class FlapGuard:
    def __init__(self, r: Any) -> None:
        self.r = r

    @staticmethod
    def pause_key(env: EnvironmentConfig) -> str:
        return _paused(env.name)

    def paused(self, env: EnvironmentConfig, revision: str) -> str | None:
        """Why correction is paused for ``env`` at ``revision``, or None (a new revision resumes it)."""
        return self.paused_as_read(env, revision, self.r.get(_paused(env.name)))

    def paused_as_read(self, env: EnvironmentConfig, revision: str, raw: str | bytes | None) -> str | None:
        """``paused``, given the value of ``pause_key(env)`` the caller read."""
        if not raw:
            return None
        pause = json.loads(raw)
        if pause.get("revision") and revision and pause["revision"] != revision:
            self.r.delete(_paused(env.name), _corrections(env.name))
            return None
        return str(pause["reason"])

    def corrected(self, env: EnvironmentConfig, refs: list[str], revision: str) -> str | None:
        """Record a sync that corrected the objects ``refs``; the pause reason when one of them was
        corrected once too often."""
        if not refs:
            return None
        now, window = time.time(), env.drift_flap.window_seconds
        key = _corrections(env.name)
        pipe = self.r.pipeline(transaction=True)
        pipe.zadd(key, {f"{now}|{revision}|{ref}": now for ref in refs})
        pipe.zremrangebyscore(key, 0, now - window)
        pipe.zrange(key, 0, -1)
        pipe.expire(key, window)
        counts = Counter(member.split("|", 2)[2] for member in pipe.execute()[2])
        ref, seen = counts.most_common(1)[0]
        if seen < env.drift_flap.max_corrections:
            return None
        reason = (f"drift of {ref} corrected {seen} times in {window}s: correction paused, drift only reported "
                  f"until {time.strftime('%H:%M:%S', time.localtime(now + window))} or a new Git revision")
        self.r.set(_paused(env.name), json.dumps({"reason": reason, "revision": revision}), ex=window)
        return reason
