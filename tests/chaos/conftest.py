"""The chaos world: one Shipline installation (own Redis, real receiver and worker processes)
shared by the fault scenarios of this package; each scenario leaves it running and healthy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.kube import KubeCluster
from devstack.stack import Stack
from tests.chaos.world import World

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.chaos)


@pytest.fixture(scope="package")
def world(stack: Stack, kube_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(stack, kube_cluster, tmp_path_factory.mktemp("chaos"))
    try:
        w.create()
        w.start_serve()
        w.start_worker()
        w.wait_worker_ready()
        yield w
    finally:
        w.stop()


@pytest.fixture(autouse=True)
def healthy_network(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every scenario starts and ends with the proxies clean (no toxic left by a failed one)."""
    yield
    if "world" in request.fixturenames:
        request.getfixturevalue("world").proxies.clear()
