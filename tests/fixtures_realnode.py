"""Session fixtures for the real node (``devstack.realnode``) and Job builds on it.

Never skipped: when the host refuses what the node needs, every test that uses it fails with the
host's exact refusal (the same text ``shipline dev up`` prints)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack.buildjobs import provision, push_builder_image
from devstack.kube import KubeCluster
from devstack.realnode import NodeUnavailable, RealNode, selector
from devstack.stack import Stack
from handlers.settings import ClusterConfig, JobBuildSettings


@pytest.fixture(scope="session")
def real_node(kube_cluster: KubeCluster, stack: Stack) -> Iterator[RealNode]:
    try:
        node = RealNode.start(kube_cluster, registry_host=stack.registry.host, images_state_dir=stack.state_dir,
                              probe_image=stack.base_image, relay_ports=[stack.ports.git, stack.ports.gitea])
    except NodeUnavailable as exc:
        pytest.fail(f"the real node cannot run pods on this machine: {exc}", pytrace=False)
    yield node
    node.stop()


@dataclass(frozen=True)
class JobBuilds:
    settings: JobBuildSettings
    """Builds on the real node, in its network namespace (where the stack's 127.0.0.1 servers are relayed)."""
    kubeconfig: Path


@pytest.fixture(scope="session")
def job_builds(real_node: RealNode, kube_cluster: KubeCluster, stack: Stack) -> JobBuilds:
    image = push_builder_image(stack.state_dir, stack.registry.host)
    provision(kube_cluster.kubeconfig)
    place = selector()
    settings = JobBuildSettings(image=image, cluster=ClusterConfig(kubeconfig=kube_cluster.kubeconfig),
                                host_network=True, node_selector=place["nodeSelector"],
                                tolerations=place["tolerations"], requests={"cpu": "100m", "memory": "128Mi"},
                                limits={"memory": "1Gi"})
    return JobBuilds(settings=settings, kubeconfig=kube_cluster.kubeconfig)
