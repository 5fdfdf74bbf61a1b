"""Access to the read-only webhook fixtures in ``tests/fixtures/webhooks`` (published payloads;
provenance in its ``SOURCES.md``).

Location: ``tests/fixtures/webhooks`` inside the repository; ``$SHIPLINE_FIXTURES`` overrides it.
A missing directory is an error at import time (tests fail loudly instead of silently skipping).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ENV = "SHIPLINE_FIXTURES"
REPO_ROOT = Path(__file__).resolve().parents[1]
IN_REPO = REPO_ROOT / "tests" / "fixtures" / "webhooks"


def fixtures_dir() -> Path:
    configured = os.environ.get(ENV)
    path = Path(configured) if configured else IN_REPO
    if not path.is_dir():
        raise FileNotFoundError(f"webhook fixtures not found at {path} (set {ENV} to their directory)")
    return path


FIXTURES = fixtures_dir()


def fixture_bytes(relative: str) -> bytes:
    return (FIXTURES / relative).read_bytes()


def fixture_json(relative: str) -> Any:
    return json.loads(fixture_bytes(relative))


def fixture_headers(relative: str) -> dict[str, str]:
    """A ``*.headers.json`` file with names lower-cased, as the HTTP edge hands them over."""
    return {name.lower(): value for name, value in fixture_json(relative).items()}


def all_fixture_files() -> set[str]:
    """Every JSON fixture, as a path relative to the fixtures directory (``github/ping.json``)."""
    return {p.relative_to(FIXTURES).as_posix() for p in FIXTURES.rglob("*.json")}
