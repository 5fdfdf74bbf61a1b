"""Fake kwok nodes (notes §4.6) and the waits that make the cluster usable for workloads."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from devstack.process import StackError

NODE_PREFIX = "kwok-node-"
CAPACITY = {"cpu": "32", "memory": "256Gi", "pods": "110"}


def node_body(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"},
            "labels": {
                "beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux",
                "kubernetes.io/hostname": name, "kubernetes.io/role": "agent",
                "node-role.kubernetes.io/agent": "", "type": "kwok",
            },
        },
        "status": {"allocatable": dict(CAPACITY), "capacity": dict(CAPACITY)},
    }


def ensure_nodes(kubeconfig: Path, count: int) -> None:
    """Create ``kwok-node-0..count-1`` (status is accepted on Node create); existing ones stay."""
    with _client(kubeconfig) as api:
        core = client.CoreV1Api(api)
        for i in range(count):
            try:
                core.create_node(node_body(f"{NODE_PREFIX}{i}"))
            except ApiException as exc:
                if exc.status != 409:
                    raise StackError(f"creating node {NODE_PREFIX}{i} failed: {exc.status} {exc.reason}") from None


def wait_nodes_ready(kubeconfig: Path, count: int, *, timeout: float) -> None:
    with _client(kubeconfig) as api:
        core = client.CoreV1Api(api)
        _poll(lambda: _ready_nodes(core) >= count, timeout, f"{count} kwok node(s) Ready")


def wait_default_service_account(kubeconfig: Path, *, timeout: float) -> None:
    """ServiceAccount admission is on: Pods in ``default`` need the SA the KCM creates."""
    with _client(kubeconfig) as api:
        core = client.CoreV1Api(api)
        _poll(lambda: core.read_namespaced_service_account("default", "default") is not None,
              timeout, "ServiceAccount default/default")


def _ready_nodes(core: client.CoreV1Api) -> int:
    nodes = core.list_node(label_selector="type=kwok").items
    return sum(
        1 for n in nodes
        if any(c.type == "Ready" and c.status == "True" for c in (n.status.conditions or []))
    )


def _poll(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    last = "never checked"
    while time.monotonic() < deadline:
        try:
            if check():
                return
            last = "not yet"
        except ApiException as exc:
            last = f"{exc.status} {exc.reason}"
        time.sleep(0.2)
    raise StackError(f"{what} not reached within {timeout:.0f}s (last: {last})")


def _client(kubeconfig: Path) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(kubeconfig))
