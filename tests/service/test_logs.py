"""An actor run's context is bound once and carried by every line logged during the run."""

from __future__ import annotations

import io
import json
import logging

from service.logs import BoundContext, JsonFormatter, bind, unbind


def test_every_line_of_a_run_carries_its_bound_context_and_none_after() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(BoundContext())
    log = logging.getLogger("shipline.test.bound")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        token = bind(actor="build_repo", correlation_id="abc123")
        log.info("inside the run")
        log.info("with its own field", extra={"correlation_id": "explicit"})
        unbind(token)
        log.info("after the run")
    finally:
        log.removeHandler(handler)
    inside, own, after = (json.loads(line) for line in out.getvalue().splitlines())
    assert (inside["actor"], inside["correlation_id"]) == ("build_repo", "abc123")
    assert own["correlation_id"] == "explicit", "a field given on the line wins over the bound one"
    assert "actor" not in after and "correlation_id" not in after
