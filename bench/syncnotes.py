"""Why a sync, drift or scale target was missed, written from the run's own measurements.

Every number in these notes is computed from ``Section.data`` of the run that wrote the table
(the API server's request counts, the engines' timings, /proc CPU): nothing is typed in, so the
text stays true when the engine changes. Only the remedies are prose (issue 13's plan).
"""

from __future__ import annotations

from typing import Any

from bench import kubeobs
from bench.common import Section, median
from bench.scale import TARGET_PERCENT

WRITES = ("APPLY", "PATCH", "PUT", "POST", "CREATE", "UPDATE", "DELETE")


def _per_object(requests: dict[str, float], n: int) -> str:
    return ", ".join(f"{count / n:.2f} {verb}" for verb, count in sorted(requests.items(), key=lambda kv: -kv[1])
                     if count >= n / 20) or "none"


def _ms_per_request(seconds: float, requests: dict[str, float]) -> float | None:
    total = sum(requests.values())
    return 1000 * seconds / total if total else None


def sync_notes(section: Section) -> list[str]:
    from bench.sync import STEPS, median_requests, medians, met

    d = section.data
    n, fluxinfo = d["count"], d["flux"]
    notes: list[str] = []
    for step in (s for s in STEPS if not met(d, s)):
        ship_r, flux_r = median_requests(d, "shipline", step), median_requests(d, "flux", step)
        applied, total = medians(d, "shipline", step), medians(d, "shipline", step, "total")
        fx = medians(d, "flux", step)
        ship_ms, flux_ms = _ms_per_request(applied, ship_r), _ms_per_request(fx, flux_r)
        pace = (f" Wall time per request: Shipline {ship_ms:.1f} ms, Flux's engine {flux_ms:.1f} ms "
                f"(Flux sends its GETs and dry runs on {fluxinfo['concurrency']} goroutines)."
                if ship_ms is not None and flux_ms is not None else "")
        written = median([r["written"] for r in d["runs"]["shipline"][step]])
        if step == "first":
            get_first = ship_r.get("GET", 0) >= n
            notes.append(
                f"First apply of {n} objects: Shipline {applied:.2f} s to applied against {fx:.2f} s for Flux's "
                f"engine. Requests per object: Shipline {_per_object(ship_r, n)}; Flux {_per_object(flux_r, n)}."
                + pace + (" Shipline reads every object before creating it although the namespace is new;"
                          " a live-state cache can answer 'absent' without a request." if get_first else "")
                + " To close: send the applies from a small bounded pool (Namespaces and CRDs first), and ask "
                "the API server nothing the watch-fed cache already knows.")
        elif step == "noop":
            budget = f"{0.3 / (ship_ms / 1000):.0f}" if ship_ms else "?"
            notes.append(
                f"No-op re-sync of {n} unchanged objects: Shipline's whole sync {total:.2f} s ({applied:.2f} s to "
                f"applied, {total - applied:.2f} s waiting for health), {kubeobs.summary(ship_r)} requests — "
                f"{_per_object(ship_r, n)} per object; at its {ship_ms or 0:.1f} ms per request, 0.3 s leaves "
                f"room for about {budget} requests. Flux's engine: {kubeobs.summary(flux_r)} in {fx:.2f} s. "
                "To close (issue 13): compare each rendered object's digest and the live resourceVersion from "
                "the watch-fed cache with the inventory's, so an unchanged object costs no request, and read "
                "health from the same cache.")
        elif step == "change":
            writes = sum(c for v, c in ship_r.items() if v.split()[0] in WRITES and not v.endswith("dry-run"))
            flux_writes = sum(c for v, c in flux_r.items() if v.split()[0] in WRITES and not v.endswith("dry-run"))
            notes.append(
                f"One-image change: Shipline wrote {written:g} objects ({writes:g} write requests) for one changed "
                f"image and took {applied:.2f} s to applied; Flux's engine wrote {flux_writes:g} after its dry "
                f"runs, in {fx:.2f} s. To close: keep the revision in the inventory instead of on every object, "
                "apply only objects whose rendered digest changed or whose live resourceVersion moved, and leave "
                "the rest to the cache.")
    return notes


def drift_notes(section: Section) -> list[str]:
    d = section.data
    edits = d["edits"]
    done = [e["corrected"] for e in edits if e["corrected"] is not None]
    if not done:
        early = max(e["at"] for e in edits) + d["limit"] < d["reconcile_interval"]
        return [f"None of the {len(edits)} edits was put back within {d['limit']:g} s"
                + (f", all before the next periodic re-sync (`reconcile_interval` {d['reconcile_interval']} s)"
                   if early else "")
                + ": the running Shipline does not see drift as it happens. To close (issue 13): a watch on the "
                "kinds it applies feeds a drift handler that re-applies the drifted object (short debounce, "
                "flap guard)."]
    early = max(e["at"] for e in edits) + d["limit"] < d["reconcile_interval"]
    return [f"{len(done)} of {len(edits)} edits put back, in " + ", ".join(f"{t:.2f}" for t in sorted(done))
            + f" s; {len(edits) - len(done)} not within {d['limit']:g} s. "
            + ("The time from the watch event to the corrected apply (debounce, queueing behind other syncs, the "
               "apply itself) is what to shorten." if early else
               f"The edits outlived `reconcile_interval` ({d['reconcile_interval']} s), so periodic re-syncs may "
               "have made these corrections rather than drift seen as it happens.")]


def scale_notes(section: Section) -> list[str]:
    d = section.data
    ship, fx, floor = d["shipline"], d["flux"], d.get("floor")
    syncs = ship.get("syncs") or 0
    target = TARGET_PERCENT / 100 * ship["wall"]
    idle = floor["cpu_percent"] / 100 * ship["wall"] if floor else 0.0
    facts = (f"While nothing changed, Shipline used {ship['cpu_seconds']:.1f} s CPU in {ship['wall']:.0f} s "
             f"({ship['cpu_percent']:.1f} % of a core)")
    if floor:
        facts += (f"; the same processes with no environment use {floor['cpu_percent']:.1f} % "
                  f"({idle:.1f} s of the window)")
    if syncs:
        facts += (f"; the {syncs:g} syncs cost {1000 * (ship['cpu_seconds'] - idle) / syncs:.0f} ms CPU and "
                  f"{sum(ship['requests'].values()) / syncs:.1f} API requests each beyond that")
    facts += (f". Flux's engine needs {fx['cpu_seconds']:.1f} s CPU for one no-op pass over the same {d['envs']} "
              f"environments, and the same machine runs both, so the ratio is the comparison that carries over "
              f"between machines; the target is absolute")
    if syncs:
        facts += (f": on this one it leaves {1000 * max(0.0, target - idle) / syncs:.0f} ms per sync after the "
                  "processes' own floor")
    from service.syncrun import HEAD_TTL_SECONDS

    return [facts + ".",
            "What a no-op reconcile still does (py-spy `--gil` of the worker under a 30-environment fleet): its "
            "dramatiq message (enqueue, fetch, ack), about ten Redis round trips (the sync's lease, the coverage "
            "checks, the environment's status and flap guard, the done counter), the inventory's GET and parse, "
            f"and a `git ls-remote` shared by the environments that sync within {HEAD_TTL_SECONDS:g} s of each "
            "other. To close: those round trips as one Lua call, the inventory from the watch cache, the head "
            "read shared for longer when a webhook or Shipline's own push names the newest commit."]


COMPUTED: dict[str, Any] = {"sync": sync_notes, "drift": drift_notes, "scale": scale_notes}
