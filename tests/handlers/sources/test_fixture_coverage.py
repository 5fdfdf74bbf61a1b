"""Every shared webhook fixture has an expectation in some provider's test module.

Each ``test_<provider>.py`` declares ``FIXTURES_COVERED``; a new fixture file without an
expectation (or an expectation naming a file that no longer exists) fails here.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
from pathlib import Path

import tests.handlers.sources as package
from tests.webhook_fixtures import FIXTURES, all_fixture_files


def covered() -> dict[str, str]:
    owners: dict[str, str] = {}
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("test_"):
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for name in getattr(module, "FIXTURES_COVERED", ()):
            owners[name] = info.name
    return owners


def test_fixtures_directory_has_files():
    assert FIXTURES.is_dir()
    assert len(all_fixture_files()) >= 40


def test_every_fixture_file_has_an_expectation():
    missing = sorted(all_fixture_files() - set(covered()))
    assert missing == [], f"fixtures without an expectation in tests/handlers/sources: {missing}"


def test_every_expectation_names_an_existing_fixture():
    stale = sorted(set(covered()) - all_fixture_files())
    assert stale == [], f"expectations for fixtures that do not exist: {stale}"


def test_fixtures_live_inside_the_repository():
    """A clone alone must pass: nothing the suite reads may sit beside the repository."""
    from tests.webhook_fixtures import ENV, IN_REPO, REPO_ROOT

    assert IN_REPO.is_relative_to(REPO_ROOT) and IN_REPO.is_dir()
    assert (IN_REPO / "SOURCES.md").is_file() and (IN_REPO / "SPECS.md").is_file()
    if not os.environ.get(ENV):
        assert FIXTURES.resolve() == IN_REPO.resolve()


def test_no_test_or_bench_module_reads_outside_the_repository():
    from tests.webhook_fixtures import REPO_ROOT as root
    beside = "shared"  # the reference folder next to the checkout, which a clone does not have
    climbing = re.compile(rf"""["']{re.escape(os.pardir)}/{beside}|/{beside}/fixtures|parents\[[3-9]\]\s*/""")
    offenders = [str(p.relative_to(root)) for folder in ("tests", "bench", "service", "handlers")
                 for p in (root / folder).rglob("*.py")
                 if p != Path(__file__).resolve() and climbing.search(p.read_text())]
    assert offenders == []
