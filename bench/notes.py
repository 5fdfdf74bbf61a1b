"""For each target a run did not meet: why (from profiling this code base), and what would close the gap.

Written from investigation (cProfile of ``Ingest.accept``, CPU accounting of the receiver under
wrk, phase timing of builds/bumps/syncs); each note is attached only when its target is missed.
"""

from __future__ import annotations

from bench.common import Section
from bench.syncnotes import COMPUTED

NOTES: dict[tuple[str, str], list[str]] = {
    ("ingest", "throughput, 1 process, vs bare"): [
        "The receiver is CPU-bound in one Python process (the hot path profile above), against an endpoint "
        "that does no work. Per delivery Shipline verifies the HMAC, parses and validates the push (every ref, "
        "sha and path checked), routes it through the index built at config load, and makes it durable: one "
        "atomic Lua call (dedupe keys, event record, dramatiq message, timeline step) on the asyncio Redis "
        "client, group-committed with the deliveries that arrive while earlier ones are on their way, and "
        "answered only after Redis's fsync (appendfsync always). The profile is flat: uvicorn's send and the "
        "event loop lead it, and no Shipline frame holds more than a few percent, so no single change closes "
        "a several-fold gap. The one layer that held more, Starlette's middleware, routing, request and "
        "response objects, is skipped for `POST /hooks/...` (`service.app.Receiver`), so the profile above "
        "no longer shows it (README: The receiver, for the side-by-side measurement).",
        "What would close more of it: more receiver processes (`shipline serve --workers N`, or the replicas "
        "the k8s base runs) on more cores: on this 2-core machine wrk, Redis and the receiver share them, so "
        "the 2-process row adds little. Half of an endpoint that does no durable work is out of reach for one "
        "CPython process; suggest restating the target as durable deliveries/s per core.",
    ],
    ("ingest", "throughput, 1 process, vs adnanh"): [
        "adnanh/webhook (Go) verifies the HMAC and forks `/bin/true` per request, without recording or "
        "queueing anything; Shipline does durable work per delivery (the next note). Where forking is cheap, as "
        "on this machine, webhook's rate is several times what one Python process does durably.",
    ],
    ("ingest", "latency p99"): [
        "At 32 concurrent connections latency follows throughput (Little's law: mean ≈ 32 / req/s; compare "
        "the p50 row with the throughput row), so p99 ≤ 20 ms needs more throughput from the process, or "
        "fewer connections per process (the 2-process row).",
    ],
    ("leadtime", "push → manifest commit"): [
        "The event crosses two dramatiq queues before the commit (events → bump); an idle consumer is woken "
        "by the enqueue (pub/sub, `service/broker.py`), so a hop costs a Redis round trip, not a poll. The "
        "rest is the bump's own git work against Gitea: a fetch of the branch head and the push, each an "
        "HTTP round trip through Gitea's git backend (the per-hop line above).",
    ],
    ("leadtime", "push → applied"): [
        "Most of it is the commit: notification → commit pushed is the first hop in the per-hop line above, "
        "and commit → applied the second. Of the commit, the plain git work against the same Gitea (fetch, "
        "commit, push: the floor in the same line) is most; Shipline's bump queue hop and its own steps are "
        "the rest. The sync after a bump uses the head the bump pushed (no second "
        "fetch of a head read before the push), applies only what changed, and is one more queue hop "
        "(bump → sync, a wake-up).",
        "To close further: run the bump and the sync in one job when nothing else is queued for the "
        "environment (one hop fewer), and keep one smart-HTTP connection to the forge for the fetch and the push.",
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
        "Done: the three OCI keys are set while pushing, by `shipline-push` (`scripts/gotools/push`: "
        "`buildah push` of the same image from the same containers/image and containers/storage versions, "
        "the labels added to the pushed config, annotations to the manifest), so the build has no step for "
        "them (with `build.keys_at_push: false`, one `LABEL` instruction appended to a copy of the Dockerfile "
        "outside the context: the `keys_at_push` row); "
        "`created` is the commit's date (a rebuild of a commit is fully cached and yields the same digest); "
        "overlay storage where a probe mount works; a build needing no `{describe}` fetches only the pushed "
        "commit, in one protocol v2 `fetch` request over http(s) (`handlers/build/packfetch.py`: the tips "
        "of the pushed branch and `HEAD` as `have`, the pack streamed into `git unpack-objects --strict`, "
        "the ref written by GitPython; `git fetch` spent two requests, its `git-remote-http` helper and a connectivity "
        "`rev-list` on the same commit), `unpack-objects` started before the request is sent so its start-up "
        "overlaps the server's work, without asking git first whether the commit is there, and leaves git's "
        "automatic maintenance to the worker's idle tick; a `{describe}` build lists the remote's tags with "
        "`ls-refs` beside that fetch instead of running `git fetch --prune` (the `{describe}` row); the "
        "registry is pinged as the build starts, beside the fetch, so a remote registry's connection round "
        "trips no longer follow it (the toxiproxy row); the commit's peeling, date, trailer and "
        "first-parent diff are one `git log`, which decides a one-commit push alone (no `merge-base`, no "
        "`diff`); every image's content key comes from one `git rev-parse` run beside that `git log`; "
        "each image builds from a kept checkout of its context that `git read-tree` moves by the files that "
        "changed (a whole export wrote every file: 60-80 ms for 119 files on this disk); the storage is "
        "pruned to each image's newest builds (the build cache section); `bud` and `push` start through "
        "util-linux's `setpriv --pdeathsig` rather than a Python `preexec_fn`, which made `subprocess` fork "
        "the whole worker (its page tables) instead of vfork-ing it; process exits are noticed through a "
        "pidfd, not `Popen.wait`'s sleeping poll; the mirror's GitPython `Repo` is kept per worker and git's "
        "config read once per open; `bud` starts before the fetch for the images the push's own "
        "paths name, its Dockerfile given through a FIFO once the checkout is moved "
        "(`handlers/build/prestart.py`: buildah spends its first 17-26 ms starting before it opens the "
        "Dockerfile).",
        "What remains (the profile and the split above), now that Shipline's build has no `LABEL` step (what "
        "one costs plain buildah is the `LABEL` row: one more working container and one more commit, "
        "containers/storage rewriting its records with `fdatasync`), is Shipline's own steps: the mirror "
        "fetch (one request to the git server, a `git http-backend` there, which a build of a local "
        "directory never makes, then `unpack-objects`), the commit facts' `git log` and the checkout's "
        "`git read-tree` (a git process each, 2-3 ms); on a half-second build 5 % is about 25-30 ms, and the "
        "fetch request alone is a third of it (the source fetch row).",
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
