"""Real network faults, injected by toxiproxy between Shipline's processes and what they talk to
(``World.proxies``): 500 ms of latency on Redis, the worker cut off from Redis for 30 s, a TCP
reset during ``git push``, a half-open registry connection during a layer upload, a slow
apiserver during a sync. Each row: lost 0, duplicated 0, and the time to recover.

Heavy (minutes), so ``make chaos`` runs this file by name and ``make test`` does not collect it
(it does not match ``test_*.py``; a directory argument would skip it too, so ``make chaos`` names
the files). ``tests/service/test_broker_recovery.py`` keeps a cheap toxiproxy check in ``make test``.
"""

from __future__ import annotations

import time

from service.broker import RECONNECT_REQUEUE_BOUND_SECONDS, REDELIVERY_BOUND_SECONDS
from tests.chaos import evidence
from tests.chaos.scenario import scenario
from tests.chaos.senders import send_all
from tests.chaos.test_ingest_faults import STREAM_SOURCES, stranded_requeues
from tests.chaos.test_kill_worker import EFFECT_SECONDS, PUSH_SOURCE, push, sleeping
from tests.chaos.world import World, wait_for

PARTITION_SECONDS = 30
HALF_OPEN_SECONDS = 20
SLOW_API_SECONDS = 20
LAYER_BYTES = 24 * 1024 * 1024
UPLOAD_RATE_KB = 1024
"""The layer upload is slowed to ~24 s so the half-open connection surely hits it mid-way."""
MIXED_SOURCES = {**STREAM_SOURCES, "sent": "1 real git push to the app repo + distinct signed Gitea pushes to the "
                                           "manifests repo from 4 sender threads"}


def test_500ms_latency_on_redis_loses_and_duplicates_nothing(world: World) -> None:
    proxies = (world.proxies.redis_worker, world.proxies.redis_serve)
    with scenario(world, "500 ms latency on Redis (receiver and worker)") as run:
        for proxy in proxies:
            proxy.add_toxic("latency", latency=500, name="slow")
        began = time.monotonic()
        answers = send_all(world.url, world.sync_only_pushes(40), run.ledger, senders=8)
        sending = time.monotonic() - began
        time.sleep(20)  # the worker keeps working under the latency
        for proxy in proxies:
            proxy.remove_toxic("slow")
        run.fault_over()
        row = run.conclude(timeout=180, sources=STREAM_SOURCES,
                           note=f"40 deliveries answered in {sending:.0f}s under latency, then 20s more of it")
    assert all(200 <= a[0] < 300 for a in answers)
    assert (row.accepted, row.lost, row.duplicated) == (40, 0, 0), row


def test_worker_partitioned_from_redis_for_30s_recovers_alone(world: World) -> None:
    workers = world.worker_pids()
    link = world.proxies.redis_worker
    with scenario(world, f"worker cut off from Redis for {PARTITION_SECONDS}s (build in flight)") as run:
        push(world, run, slow=8)
        wait_for(lambda: sleeping(world, 8), timeout=90, what="the build running", log=world.daemon("worker").log_file)
        link.add_toxic("timeout", stream="upstream", timeout=0, name="cut_up")
        link.add_toxic("timeout", stream="downstream", timeout=0, name="cut_down")
        cut = time.monotonic()
        answers = send_all(world.url, world.sync_only_pushes(60), run.ledger, senders=4)  # the receiver still works
        time.sleep(max(0.0, PARTITION_SECONDS - (time.monotonic() - cut)))
        link.remove_toxic("cut_up")
        link.remove_toxic("cut_down")
        healed = time.time()
        run.fault_over()
        row = run.conclude(timeout=EFFECT_SECONDS + REDELIVERY_BOUND_SECONDS, landed=world.release_landed,
                           sources=MIXED_SOURCES, note=_stranded_note(world, healed))
    assert all(200 <= a[0] < 300 for a in answers)
    assert (row.accepted, row.lost, row.duplicated) == (61, 0, 0), row
    assert world.worker_pids() == workers, "the worker was restarted"
    assert all(float(line["at"]) - healed <= RECONNECT_REQUEUE_BOUND_SECONDS
               for line in stranded_requeues(world, healed))


def _stranded_note(world: World, since: float) -> str:
    lines = stranded_requeues(world, since)
    if not lines:
        return "worker not restarted; no message stranded"
    took = max(float(line["at"]) - since for line in lines)
    return (f"worker not restarted; {sum(int(line.get('requeued', 0)) for line in lines)} stranded message(s) "
            f"requeued, the last {took:.1f}s after the partition healed")


def test_tcp_reset_during_git_push_commits_once(world: World) -> None:
    """The remote holds the push in its pre-receive hook (the pack is sent); the reset meets the
    remote's answer: the push lands, the worker sees ``Connection reset by peer``."""
    with scenario(world, "TCP reset during git push (the push lands)") as run:
        world.hold.touch()
        try:
            push(world, run)
            wait_for(world.waiting.exists, timeout=120, what="the bump inside git push",
                     log=world.daemon("worker").log_file)
            pushes_before = _bump_failures(world)
            with world.proxies.git.toxic("reset_peer", stream="downstream", timeout=0):
                world.hold.unlink()
                wait_for(lambda: _bump_failures(world) > pushes_before, timeout=30, what="the push failing",
                         log=world.daemon("worker").log_file)
        finally:
            world.hold.unlink(missing_ok=True)
            world.waiting.unlink(missing_ok=True)
        run.fault_over()
        row = run.conclude(timeout=EFFECT_SECONDS, landed=world.release_landed, sources=PUSH_SOURCE,
                           note="the bump's push was reset after the remote took it")
    assert (row.accepted, row.lost, row.duplicated) == (1, 0, 0), row


def _bump_failures(world: World) -> int:
    return sum(1 for line in world.log_lines("worker")
               if line.get("actor") == "bump_env" and "will retry" in str(line.get("msg", "")))


def _upload_in_progress(world: World) -> bool:
    """The registry's storage holds a partial blob upload of the app image (bytes arrived)."""
    repo = world.image.split("/", 1)[1]
    uploads = world.registry_data / "docker" / "registry" / "v2" / "repositories" / repo / "_uploads"
    return any((u / "data").exists() and (u / "data").stat().st_size > 1024 * 1024 for u in uploads.iterdir()) \
        if uploads.is_dir() else False


def test_half_open_registry_connection_during_a_layer_upload(world: World) -> None:
    link = world.proxies.registry
    with scenario(world, f"half-open registry connection ({HALF_OPEN_SECONDS}s) during a layer upload") as run:
        link.add_toxic("bandwidth", stream="upstream", rate=UPLOAD_RATE_KB, name="narrow")
        try:
            push(world, run, big=LAYER_BYTES)
            wait_for(lambda: _upload_in_progress(world), timeout=180, what="a layer upload in progress",
                     log=world.daemon("worker").log_file)
            with link.toxic("timeout", stream="upstream", timeout=0, name="silent_up"), \
                    link.toxic("timeout", stream="downstream", timeout=0, name="silent_down"):
                time.sleep(HALF_OPEN_SECONDS)  # bytes vanish both ways; no FIN, no RST
        finally:
            link.remove_toxic("narrow")
        run.fault_over()
        row = run.conclude(timeout=EFFECT_SECONDS + 60, landed=world.release_landed, sources=PUSH_SOURCE,
                           note=f"{LAYER_BYTES >> 20} MiB layer at {UPLOAD_RATE_KB} KB/s")
    assert (row.accepted, row.lost, row.duplicated) == (1, 0, 0), row


def test_slow_apiserver_during_a_sync_applies_once(world: World) -> None:
    link = world.proxies.kube
    with scenario(world, f"slow apiserver (+1 s per answer, {SLOW_API_SECONDS}s) during a sync") as run:
        head = world.deploy_head()
        push(world, run)
        wait_for(lambda: world.deploy_head() != head, timeout=120, what="the bump committed (the sync comes next)",
                 log=world.daemon("worker").log_file)
        with link.toxic("latency", latency=1000, jitter=250, name="slow"):
            time.sleep(SLOW_API_SECONDS)
        run.fault_over()
        row = run.conclude(timeout=EFFECT_SECONDS, landed=world.release_landed, sources=PUSH_SOURCE)
    assert (row.accepted, row.lost, row.duplicated) == (1, 0, 0), row
    assert evidence.applies(world.audit_log), "the audit log saw no apply at all"
