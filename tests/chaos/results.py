"""One row per fault scenario, appended to a JSON-lines file that ``report.py`` prints as a table."""

from __future__ import annotations

import json
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS_ENV = "SHIPLINE_CHAOS_RESULTS"
COLUMNS = ("scenario", "sent", "accepted", "processed", "lost", "duplicated")


def results_file() -> Path:
    return Path(os.environ.get(RESULTS_ENV) or REPO_ROOT / "artifacts" / "chaos-results.jsonl")


def record(scenario: str, *, sent: int, accepted: int, processed: int, lost: int, duplicated: int,
           note: str = "") -> None:
    """Append a row; a scenario asserts ``lost == duplicated == 0`` itself, after recording."""
    path = results_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    row = {"scenario": scenario, "sent": sent, "accepted": accepted, "processed": processed,
           "lost": lost, "duplicated": duplicated, "note": note}
    with path.open("a") as out:
        out.write(json.dumps(row) + "\n")
