"""One row per fault scenario, appended to a JSON-lines file that ``report.py`` prints as a table.

Every number of a row is counted outside Shipline (``evidence.py``) and the row names, per column,
where it was counted (``EVIDENCE``; a scenario may say more precisely in ``Row.evidence``).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS_ENV = "SHIPLINE_CHAOS_RESULTS"
COLUMNS = ("scenario", "sent", "accepted", "processed", "lost", "duplicated", "recovery_s")
EVIDENCE = {
    "sent": "deliveries the test's senders posted (a git push: the git server's hook posted it)",
    "accepted": "event ids in the receiver's 2xx answers, plus the receiver's records (Redis) of those "
                "deliveries whose answer never arrived",
    "processed": "accepted ids whose record, and every record Shipline made for it (same correlation id), "
                 "is in a final state (done/failed/ignored/superseded) in Redis",
    "lost": "accepted - processed when the scenario's deadline passed",
    "duplicated": "git: commits per (Shipline-Event, Shipline-Environment) trailer in the manifests repo; "
                  "registry: digests per tag in its storage (_manifests/tags/<tag>/index); cluster: the "
                  "apiserver's audit log, successful non-dry-run PATCHes by fieldManager=shipline that wrote "
                  "an object with the same shipline.dev/digest as Shipline's previous write of it, no other "
                  "write in between",
    "recovery_s": "test clock: end of the fault -> the last accepted id processed",
}


@dataclass
class Row:
    scenario: str
    sent: int
    accepted: int
    processed: int
    lost: int
    duplicated: int
    recovery_s: float | None = None
    note: str = ""
    evidence: dict[str, str] = field(default_factory=dict)
    """Column → where it was counted, when more precise than ``EVIDENCE``."""

    @property
    def clean(self) -> bool:
        return self.lost == 0 and self.duplicated == 0


def results_file() -> Path:
    return Path(os.environ.get(RESULTS_ENV) or REPO_ROOT / "artifacts" / "chaos-results.jsonl")


def record(row: Row) -> Row:
    """Append ``row``; the scenario asserts on it afterwards, so a failing one still has its row."""
    path = results_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = asdict(row)
    data["evidence"] = {**EVIDENCE, **row.evidence}
    with path.open("a") as out:
        out.write(json.dumps(data) + "\n")
    return row
