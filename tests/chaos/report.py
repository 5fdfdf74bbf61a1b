"""Print the chaos results as one table: ``python -m tests.chaos.report`` (``make chaos`` does)."""

from __future__ import annotations

import json
import sys

from tests.chaos.results import COLUMNS, results_file


def table(rows: list[dict]) -> str:
    cells = [list(COLUMNS) + ["note"]] + [[str(r.get(c, "")) for c in (*COLUMNS, "note")] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = [" | ".join(v.ljust(w) if i in (0, len(widths) - 1) else v.rjust(w)
                        for i, (v, w) in enumerate(zip(row, widths, strict=True))).rstrip() for row in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> int:
    path = results_file()
    if not path.exists():
        print(f"no chaos results in {path}", file=sys.stderr)
        return 1
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    print(table(rows))
    bad = [r["scenario"] for r in rows if r["lost"] or r["duplicated"]]
    if bad:
        print(f"\nLOST OR DUPLICATED in: {', '.join(bad)}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
