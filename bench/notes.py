"""For each target a run did not meet: why (from profiling this code base), and what would close the gap.

Written from investigation (cProfile of ``Ingest.accept``, CPU accounting of the receiver under
wrk, phase timing of builds/bumps/syncs); each note is attached only when its target is missed.
"""

from __future__ import annotations

from bench.common import Section
from bench.syncnotes import COMPUTED

NOTES: dict[tuple[str, str], list[str]] = {
    ("ingest", "throughput vs bare"): [
        "The receiver is CPU-bound in one Python process, against an endpoint that does no work (~0.05 ms of "
        "CPU per request). Shipline verifies the HMAC, parses and normalizes the push (~0.15 ms with the JSON "
        "depth guard), then makes the delivery durable: one atomic Lua script (dedupe keys, event record, "
        "dramatiq message, timeline step) whose reply waits for Redis's fsync (appendfsync always), run in a "
        "worker thread so the event loop never blocks; the thread hand-off, uvicorn's HTTP handling and a "
        "JSON log line make up most of the rest.",
        "Done in this code: 8 Redis round trips per delivery became 4 (pipelining), then 1 (the Lua script, "
        "which also removed the 'claimed but not enqueued' state), and the record is no longer deep-copied: "
        "sequential in-process cost 3.4 → 1.3 ms, and under wrk 459 → 791 req/s with p99 619 → 88 ms.",
        "What would close more of it: (1) an asyncio Redis client instead of a thread per request; (2) more "
        "receiver processes (`uvicorn --workers N`, or the 2 replicas the k8s base already runs): the receiver "
        "is stateless, but on this 2-core machine wrk takes the other core. 0.7× of an endpoint that does no "
        "durable work is out of reach for one Python process; suggest restating the target as durable "
        "deliveries/s per core.",
    ],
    ("ingest", "throughput vs adnanh/webhook"): [
        "adnanh/webhook (Go) verifies the HMAC and forks `/bin/true` asynchronously, without recording or "
        "queueing anything; Shipline does durable work per delivery (see above), so 2× webhook would need "
        "~5 k durable deliveries/s from one process — the same changes as above, plus multiple processes.",
    ],
    ("ingest", "latency p99"): [
        "At 32 concurrent connections latency follows throughput (Little's law: mean ≈ 32 / req/s, ~50 ms "
        "at ~600 req/s), so p99 ≤ 20 ms needs > 1,600 req/s from the process, or fewer connections per "
        "process. At low concurrency a delivery takes ~1.3 ms end to end (in-process, sequential).",
    ],
    ("leadtime", "push → manifest commit"): [
        "The event crosses two dramatiq queues before the commit (events → bump). An idle dramatiq Redis "
        "consumer polls with an exponential backoff up to the worker timeout (1 s by default): each hop "
        "waits 0–1 s for a worker to notice the message. The bump's own git work is a fraction of a second "
        "(the 10,000-file bump benchmark: ~0.5 s warm); the local git server also runs the deploy repo's "
        "webhook hook inside the push, so the push returns only after that hook's POST.",
        "To close: lower dramatiq's idle poll ceiling (`Worker(worker_timeout=...)`, e.g. 100 ms: ~10 Redis "
        "calls/s per idle queue) or, better, wake consumers on enqueue; run `process_event` for image events "
        "inline in the bump actor's queue (one hop fewer).",
    ],
    ("leadtime", "push → applied"): [
        "A third queue hop (bump → sync) adds another 0–1 s of polling; the sync itself fetches the manifests "
        "again and applies every object of the revision. The manifests push also fires the deploy repo's own "
        "webhook, which requests a second sync for the same commit (coalesced, but it can hold the sync lock "
        "first). Same fixes as above; plus skipping the webhook-triggered sync when its head commit was "
        "written by Shipline (`Shipline-Bot: true`).",
        "Found on the way (not fixed here, `service/pipeline.py` is being changed by others): "
        "`request_sync` increments the request counter before it adds the event id to the pending set, so a "
        "sync already running can cover the request (coalesced) without ever writing that event's `sync` "
        "step — it appears only after a later sync. Adding the id before incrementing closes it.",
    ],
    ("bump", "event → pushed commit"): [
        "What a warm bump does now (phases above): one fetch of the branch head, `git log` for the trailers, "
        "`git ls-tree` of the head, a read of only the blobs never screened before (screening facts are kept "
        "by blob id, so an unchanged file is never read again), parse and edit of the marked files in memory, "
        "a commit written by `git fast-import` (it reads only the trees along the edited path), and a push. "
        "No working tree is checked out, reset or cleaned; before, the marker scan read all 10,000 files "
        "and the reset and clean walked them.",
        "Where the rest goes: the fetch and the push are HTTP round trips to the git server, each spawning "
        "`git http-backend` there; the floor pays the push but not the fetch, since its clone is the only "
        "writer of its twin repository. Shipline cannot skip the fetch (another writer may have moved the "
        "branch); a persistent smart-HTTP connection or the server's push hook telling Shipline the new head "
        "would be the next steps. `git ls-tree` of 10,000 entries and its parsing grow with the repository: "
        "a listing kept per head, updated from `git diff-tree` between the previous and the new head, would "
        "make that part proportional to the change too.",
    ],
    ("build", "build + push"): [
        "Done: the three OCI labels are one `LABEL` instruction appended to a copy of the Dockerfile outside "
        "the context (buildah 1.28 made each `--label` its own committed step), `created` is the commit's "
        "date (a rebuild of a commit is fully cached and yields the same digest), overlay storage is used "
        "where a probe mount works, and the mirror reads its origin URL from its config file and peels the "
        "pushed commit in one git call.",
        "What remains is in the profile above: the mirror fetch (an HTTP round trip to the git server) is "
        "most of Shipline's own time; the diff, `git describe`, the content key, the registry ping and the "
        "export are a few git processes each. The one `LABEL` step is one more commit than the plain build "
        "makes; on vfs every commit copies the root filesystem, so the gap is largest there.",
    ],
    ("build", "docs-only"): [
        "A docs-only push still fetches the mirror over HTTP and diffs the push. Deciding from "
        "the webhook's own changed paths when the sender lists them completely would skip the fetch.",
    ],
}


def gap_notes(section: Section) -> list[str]:
    notes: list[str] = []
    computed = COMPUTED.get(section.name)
    if computed is not None and section.data and any(row.met is False for row in section.rows):
        notes += computed(section)  # sync, drift, scale: written from the run's own numbers
    for row in section.rows:
        if row.met is not False:
            continue
        for (name, prefix), texts in NOTES.items():
            if name == section.name and row.metric.startswith(prefix):
                notes += [t for t in texts if t not in notes]
    return notes
