"""The Job backend's lifecycle against kwok, where pods "complete" without running: what Shipline
does with the Job whatever the node (creation, adoption, deletion, a result without a digest).
The builds themselves run on the real node (``test_job_backend.py``)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from kubernetes import client, config

from devstack.buildjobs import provision
from devstack.kube import KubeCluster
from handlers.build.builder import BuildSpec, GitSource
from handlers.build.errors import BuildFailed, Superseded
from handlers.build.jobs import JobBuilder
from handlers.build.jobspec import BUILD_LABEL
from handlers.settings import ClusterConfig, JobBuildSettings, RegistryConfig

pytestmark = pytest.mark.stack
NAMESPACE = "kwok-builds"


@pytest.fixture
def builder(kube_cluster: KubeCluster) -> JobBuilder:
    provision(kube_cluster.kubeconfig, namespace=NAMESPACE)
    settings = JobBuildSettings(image="127.0.0.1:1/shipline/buildah:none", namespace=NAMESPACE,
                                cluster=ClusterConfig(kubeconfig=kube_cluster.kubeconfig))
    return JobBuilder(settings=settings, registries=[RegistryConfig(host="127.0.0.1:1", insecure=True)])


def spec() -> BuildSpec:
    sha = uuid.uuid4().hex + "00000000"
    return BuildSpec(image="127.0.0.1:1/kwok/app", tags=(sha[:7],), context=Path("/nowhere"),
                     dockerfile=Path("/nowhere/Dockerfile"), timeout_seconds=60,
                     source=GitSource("http://127.0.0.1:1/app.git", sha, ".", "Dockerfile"))


def jobs(kube_cluster: KubeCluster, build: BuildSpec) -> list[client.V1Job]:
    batch = client.BatchV1Api(config.new_client_from_config(config_file=str(kube_cluster.kubeconfig)))
    return [j for j in batch.list_namespaced_job(NAMESPACE).items
            if j.metadata.annotations["shipline.dev/revision"] == build.source.sha]  # type: ignore[union-attr]


def test_a_job_that_completes_without_a_digest_fails_the_build_and_is_adopted_not_repeated(
        builder: JobBuilder, kube_cluster: KubeCluster, tmp_path: Path) -> None:
    build = spec()
    for attempt in ("first", "redelivered"):
        with pytest.raises(BuildFailed, match="succeeded without a digest"):
            builder.build(build, log=tmp_path / f"{attempt}.log", should_continue=lambda: True)
    (job,) = jobs(kube_cluster, build)
    assert "adopting Job" in (tmp_path / "redelivered.log").read_text()
    assert job.metadata.labels[BUILD_LABEL] and job.metadata.labels["app.kubernetes.io/managed-by"] == "shipline"


def test_a_superseded_build_deletes_its_job(builder: JobBuilder, kube_cluster: KubeCluster, tmp_path: Path) -> None:
    build = spec()
    with pytest.raises(Superseded, match="was deleted"):
        builder.build(build, log=tmp_path / "build.log", should_continue=lambda: False)
    assert [j for j in jobs(kube_cluster, build) if not j.metadata.deletion_timestamp] == []
