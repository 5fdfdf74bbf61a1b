"""`make test` runs every test module in the tree: none is left out by a directory rule.

pytest's default ``norecursedirs`` skips any directory named ``build``; it silently left out
``tests/handlers/build`` (112 tests) until this guard was written.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_test_module_is_collected_by_the_default_run() -> None:
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    collected = {line.split("::", 1)[0] for line in done.stdout.splitlines() if "::" in line}
    on_disk = {str(path.relative_to(ROOT)) for path in (ROOT / "tests").rglob("test_*.py")}
    assert on_disk - collected == set(), "test modules the default run never collects"
    assert "tests/handlers/build/test_process.py" in collected
