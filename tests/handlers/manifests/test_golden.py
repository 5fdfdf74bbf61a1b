"""Golden directories: ``tests/golden/bump/<case>/original`` → ``expected``, compared byte for byte."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from handlers.manifests import ImageUpdate, update_manifests
from handlers.yamlsafe import load_yaml_text

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "bump"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "case.yaml").is_file())


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _run(case: str, work: Path) -> tuple[int, tuple[str, ...]]:
    spec = load_yaml_text((GOLDEN / case / "case.yaml").read_text())
    shutil.copytree(GOLDEN / case / "original", work)
    updates = [ImageUpdate(**u) for u in spec["updates"]]
    result = update_manifests(work, updates, spec["markers"], known_images=spec.get("known_images", []),
                              image_files=spec.get("files"))
    return len(result.changes), result.warnings


def test_there_are_golden_cases() -> None:
    assert len(CASES) >= 8


@pytest.mark.parametrize("case", CASES)
def test_golden_case_matches_expected_bytes(case: str, tmp_path: Path) -> None:
    work = tmp_path / "work"
    changes, _ = _run(case, work)
    assert _files(work) == _files(GOLDEN / case / "expected")
    assert changes == load_yaml_text((GOLDEN / case / "case.yaml").read_text())["changes"]


@pytest.mark.parametrize("case", CASES)
def test_golden_case_reports_expected_warnings(case: str, tmp_path: Path) -> None:
    _, warnings = _run(case, tmp_path / "work")
    for wanted in load_yaml_text((GOLDEN / case / "case.yaml").read_text()).get("warnings", []):
        assert any(wanted in w for w in warnings), (wanted, warnings)


@pytest.mark.parametrize("case", CASES)
def test_golden_case_is_idempotent(case: str, tmp_path: Path) -> None:
    work = tmp_path / "work"
    _run(case, work)
    spec = load_yaml_text((GOLDEN / case / "case.yaml").read_text())
    again = update_manifests(work, [ImageUpdate(**u) for u in spec["updates"]], spec["markers"],
                             known_images=spec.get("known_images", []), image_files=spec.get("files"))
    assert again.changes == ()
    assert _files(work) == _files(GOLDEN / case / "expected")
