"""Helpers for sync tests against the real control plane: one namespace + environment per test,
manifests written as files into a throw-away "checkout"."""

from __future__ import annotations

import re
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from devstack.kube import CONTEXT, KubeCluster
from handlers.settings import EnvironmentConfig

IMAGE = "127.0.0.1:5000/app"


@pytest.fixture(scope="session")
def api(kube_cluster: KubeCluster) -> Iterator[client.ApiClient]:
    with config.new_client_from_config(config_file=str(kube_cluster.kubeconfig), context=CONTEXT) as api:
        yield api


@pytest.fixture
def namespace(api: client.ApiClient, request: pytest.FixtureRequest) -> str:
    """A fresh namespace named after the test, settled: with its default ServiceAccount (for Pods)
    and its ``kube-root-ca.crt`` ConfigMap, so neither appears in the middle of a test that counts
    or versions what the namespace holds."""
    name = "t-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.removeprefix("test_").lower())[:50].strip("-")
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": name}})
    deadline = time.monotonic() + 120  # the controller-manager makes both; slow on a loaded machine
    for listed, wanted, what in ((core.list_namespaced_service_account, "default", "default ServiceAccount"),
                                 (core.list_namespaced_config_map, "kube-root-ca.crt", "kube-root-ca.crt")):
        while not listed(name, field_selector=f"metadata.name={wanted}").items:
            assert time.monotonic() < deadline, f"{what} never appeared"
            time.sleep(0.1)
    return name


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    (tmp_path / "deploy").mkdir()
    return tmp_path


def make_env(kube_cluster: KubeCluster, namespace: str, **overrides: Any) -> EnvironmentConfig:
    data: dict[str, Any] = {
        "name": namespace, "namespace": namespace,
        "git": {"url": "http://127.0.0.1/unused.git", "path": "deploy"},
        "cluster": {"kubeconfig": str(kube_cluster.kubeconfig), "context": CONTEXT},
        "health_timeout": 60,
    }
    for key, value in overrides.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and key in data else value
    return EnvironmentConfig.model_validate(data)


def write(checkout: Path, rel: str, text: str) -> Path:
    path = checkout / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def configmap(name: str, **data: str) -> str:
    lines = "".join(f"\n  {k}: {v!r}" for k, v in data.items())
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:{lines}\n"


def deployment(name: str, tag: str = "1", *, replicas: int = 2, extra_pod_spec: str = "") -> str:
    return textwrap.dedent(f"""\
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: {name}
        spec:
          replicas: {replicas}
          selector:
            matchLabels: {{app: {name}}}
          template:
            metadata:
              labels: {{app: {name}}}
            spec:
              containers:
                - name: app
                  image: {IMAGE}:{tag}
        """) + textwrap.indent(textwrap.dedent(extra_pod_spec), " " * 6)
