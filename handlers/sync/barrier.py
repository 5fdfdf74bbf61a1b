"""Waiting at a barrier: the objects a phase must have ready before the next phase is applied
(kluctl's ``barrier: true``, ``waitReadiness``), judged by ``handlers.sync.readiness``."""

from __future__ import annotations

import time

from handlers.sync.health import Health
from handlers.sync.kubeapi import KubeApi, NotFound
from handlers.sync.objects import ObjRef
from handlers.sync.readiness import check

POLL_SECONDS = 0.5


def wait_ready(api: KubeApi, refs: list[ObjRef], *, timeout: float) -> Health | None:
    """None once every object in ``refs`` is ready; Degraded (with the reason) when one failed or
    ``timeout`` passed: the phases after the barrier are then not applied."""
    deadline = time.monotonic() + timeout
    waiting = list(refs)
    while True:
        reasons = []
        for ref in waiting:
            try:
                live = api.get(ref)
            except NotFound:
                live = None
            if live is None:
                reasons.append((ref, "waiting", "not found"))
                continue
            state = check(live)
            if state.state == "failed":
                return Health("Degraded", f"barrier: {ref} failed: {state.reason}")
            if not state.ready:
                reasons.append((ref, state.state, state.reason))
        if not reasons:
            return None
        waiting = [ref for ref, _, _ in reasons]
        if time.monotonic() >= deadline:
            why = "; ".join(f"{ref}: {reason}" for ref, _, reason in reasons[:5])
            return Health("Degraded", f"barrier not passed after {timeout:g}s, later phases not applied: {why}")
        time.sleep(POLL_SECONDS)
