"""The drift flap guard against real Redis: one object corrected again and again pauses the
environment's correction (reported why, resumed by a new Git revision); edits of many different
objects are each corrected."""

from __future__ import annotations

from service.config import parse_config
from service.flapguard import FlapGuard


def staging(max_corrections: int = 3):  # noqa: ANN201
    config = parse_config({"environments": [{"name": "staging", "git": {"url": "http://127.0.0.1:1/m.git"},
                                             "drift_flap": {"max_corrections": max_corrections}}]})
    return config.environment("staging")


def test_one_object_fought_over_pauses_correction_until_a_new_revision(redis_client) -> None:
    guard, env = FlapGuard(redis_client), staging()
    assert guard.corrected(env, ["Deployment/shop/web"], "r1") is None
    assert guard.corrected(env, ["Deployment/shop/web"], "r1") is None

    reason = guard.corrected(env, ["Deployment/shop/web"], "r1")

    assert reason is not None and "Deployment/shop/web corrected 3 times" in reason
    assert guard.paused(env, "r1") == reason
    assert guard.paused(env, "r2") is None, "a new Git revision resumes correction"


def test_edits_of_different_objects_are_each_corrected(redis_client) -> None:
    guard, env = FlapGuard(redis_client), staging()
    for n in range(10):
        assert guard.corrected(env, [f"Deployment/shop/obj-{n}"], "r1") is None
    assert guard.paused(env, "r1") is None
    assert guard.corrected(env, [], "r1") is None
