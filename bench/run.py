"""``make bench``: run the benchmarks and write BENCHMARKS.md at the repo root.

``python -m bench.run`` runs all; ``python -m bench.run ingest sync`` a subset; ``--quick`` uses
smaller sizes for iterating (its numbers are marked and are not the reference). Results of every
run are kept in ``build/bench/results.json`` (ignored by git), so a subset run refreshes its own
sections and keeps the others; BENCHMARKS.md is rendered from that file each time.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from pathlib import Path

from bench.common import REPO_ROOT, Row, Section, machine
from bench.notes import gap_notes

ORDER = ("ingest", "leadtime", "sync", "drift", "scale", "render", "bump", "build", "buildcache", "buildjobs")
RESULTS = REPO_ROOT / "bench" / "results.json"
"""Tracked beside BENCHMARKS.md: a run of some sections keeps the others' last results (each says when it ran)."""
OUTPUT = REPO_ROOT / "BENCHMARKS.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"a subset of: {' '.join(ORDER)}")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (for iterating, not for the record)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(ORDER))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {list(ORDER)}")
    names = [n for n in ORDER if n in args.names] or list(ORDER)
    stored = load()
    stored["machine"] = machine()
    failed = []
    for name in names:
        print(f"== {name}{' (quick)' if args.quick else ''}", flush=True)
        began = time.perf_counter()
        try:
            section = importlib.import_module(f"bench.{name}").bench(quick=args.quick)
        except Exception:  # noqa: BLE001 - one failing benchmark must not lose the others
            traceback.print_exc()
            failed.append(name)
            continue
        section.seconds = round(time.perf_counter() - began, 1)
        section.machine = stored["machine"]
        if args.quick:
            section.title += " (quick)"
            for row in section.rows:
                row.benchmark = section.title
        section.gaps = gap_notes(section)
        stored["sections"][name] = section.to_dict()
        print(f"   done in {section.seconds:.0f} s", flush=True)
        save(stored)
    OUTPUT.write_text(render(stored))
    print(f"wrote {OUTPUT.relative_to(REPO_ROOT)}" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def load() -> dict:
    try:
        data = json.loads(RESULTS.read_text())
    except (OSError, ValueError):
        data = {}
    data.setdefault("sections", {})
    return data


def save(data: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=2))


def render(data: dict) -> str:
    sections = [Section.from_dict(dict(data["sections"][n])) for n in ORDER if n in data["sections"]]
    rows = [r for s in sections for r in s.rows]
    met = [r for r in rows if r.met is True]
    unmet = [r for r in rows if r.met is False]
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m bench.run`; never part of `make test`, and no test asserts a "
        "timing). Each benchmark starts its own stack (Redis, registry, git server, control plane) from the "
        "project's devstack code in a temp dir on free loopback ports, measures Shipline and its baseline in "
        "the same run, and stops everything.",
        "",
        f"**Machine of the latest run:** {data.get('machine', '?')} (each section names its own).",
        "",
        f"**Targets:** {len(met)} met, {len(unmet)} not met"
        + (" (" + "; ".join(f"{r.benchmark}: {r.metric}" for r in unmet) + ")" if unmet else "") + ".",
        "",
        "| benchmark | metric | Shipline | baseline | ratio | target | met? |",
        "|---|---|---|---|---|---|---|",
        *(_row(r) for r in rows),
        "",
    ]
    for section in sections:
        lines += [f"## {section.title}", "", f"Measured {section.measured_at} in {section.seconds:.0f} s"
                  + (f" on {section.machine}." if section.machine else "."), ""]
        lines += [f"- {fact}" for fact in section.facts]
        if section.gaps:
            lines += ["", "**Targets not met: why, and what would close the gap.**", ""]
            lines += [f"- {gap}" for gap in section.gaps]
        lines.append("")
    return "\n".join(lines)


def _row(r: Row) -> str:
    met = {True: "yes", False: "**no**", None: ""}[r.met]
    cells = [r.benchmark, r.metric, r.shipline, r.baseline, r.ratio, r.target, met]
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    raise SystemExit(main())
