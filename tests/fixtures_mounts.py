"""Session fixture: no mount left under the session's temp dir once the suite ends (buildah's
overlay storage and builds killed by the chaos tests leave some), so pytest can remove it later."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.mounts import unmount_below


@pytest.fixture(scope="session", autouse=True)
def no_mounts_left_behind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    yield
    failed = unmount_below(tmp_path_factory.getbasetemp())
    assert not failed, f"mounts left under the test temp dir: {failed}"
