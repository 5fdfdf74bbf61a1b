"""Print the chaos results: one table, then per row where each column was counted.

``python -m tests.chaos.report`` (``make chaos`` and ``make soak`` run it); exits 1 when a row lost
or duplicated anything.
"""

from __future__ import annotations

import json
import sys

from tests.chaos.results import COLUMNS, EVIDENCE, results_file


def _cell(row: dict, column: str) -> str:
    value = row.get(column)
    if value is None:
        return "-"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def table(rows: list[dict]) -> str:
    cells = [["#", *COLUMNS, "note"]] + [[str(i), *(_cell(r, c) for c in COLUMNS), r.get("note", "")]
                                         for i, r in enumerate(rows, 1)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    left = {1, len(widths) - 1}
    lines = [" | ".join(v.ljust(w) if i in left else v.rjust(w)
                        for i, (v, w) in enumerate(zip(row, widths, strict=True))).rstrip() for row in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def sources(rows: list[dict]) -> str:
    """Where each column of each row was counted: a source shared by every row once, then the
    rows' own sources, rows with the same ones together."""
    shared = {c: EVIDENCE[c] for c in EVIDENCE if all(r.get("evidence", {}).get(c) == EVIDENCE[c] for r in rows)}
    lines = ["Evidence, every row:"] + [f"  {c}: {v}" for c, v in shared.items()]
    groups: dict[tuple[tuple[str, str], ...], list[int]] = {}
    for i, row in enumerate(rows, 1):
        own = tuple((c, v) for c, v in row.get("evidence", {}).items() if c not in shared)
        groups.setdefault(own, []).append(i)
    for own, numbers in groups.items():
        if own:
            lines.append(f"Evidence, row{'s' if len(numbers) > 1 else ''} {', '.join(map(str, numbers))}:")
            lines += [f"  {c}: {v}" for c, v in own]
    return "\n".join(lines)


def main() -> int:
    path = results_file()
    if not path.exists():
        print(f"no chaos results in {path}", file=sys.stderr)
        return 1
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    print(table(rows))
    print()
    print(sources(rows))
    bad = [r["scenario"] for r in rows if r["lost"] or r["duplicated"]]
    if bad:
        print(f"\nLOST OR DUPLICATED in: {', '.join(bad)}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
