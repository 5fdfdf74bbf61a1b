"""Session fixture: a real control plane (etcd, kube-apiserver, KCM, scheduler, kwok nodes) in its
own temp state dir. Never skipped: a missing binary fails with the build/install hint."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.kube import KubeCluster


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    cluster = KubeCluster.start(tmp_path_factory.mktemp("kube"), nodes=2)
    yield cluster
    cluster.stop()
