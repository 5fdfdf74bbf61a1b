"""The real node as the apiserver sees it: readiness, the probe pod, the ``kubernetes`` Service's
endpoint, draining, and the telling reason when a pod does not run."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from devstack.nodeconfig import NODE_LABEL
from devstack.process import StackError

PROBE_OUTPUT = "shipline-node-probe-ok"
PROBE_TIMEOUT = 90.0
"""Scheduling, two image pulls from the local registry, one short container: seconds, unless loaded."""


def selector() -> dict[str, Any]:
    """What a pod spec needs to land on the real node: merge into ``spec``."""
    return {"nodeSelector": {NODE_LABEL: "true"},
            "tolerations": [{"key": NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}]}


def core_api(kubeconfig: Path) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))


def node_ready(kubeconfig: Path, name: str) -> bool:
    try:
        node = core_api(kubeconfig).read_node(name)
    except (ApiException, OSError):
        return False
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


def point_kubernetes_service(kubeconfig: Path, address: str, port: int) -> None:
    """The apiserver runs with ``--endpoint-reconciler-type=none``: give ``default/kubernetes`` the
    address where the node's pods reach it (the relay on the bridge); the endpoint-slice mirroring
    controller turns it into the slice kube-proxy reads."""
    core = core_api(kubeconfig)
    body = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "kubernetes", "namespace": "default"},
            "subsets": [{"addresses": [{"ip": address}], "ports": [{"name": "https", "port": port,
                                                                     "protocol": "TCP"}]}]}
    try:
        core.replace_namespaced_endpoints("kubernetes", "default", body)
    except ApiException as exc:
        if exc.status != 404:
            raise StackError(f"setting the kubernetes Service's endpoint failed: {exc.status} {exc.reason}") from None
        core.create_namespaced_endpoints("default", body)


def probe(kubeconfig: Path, image: str, *, dns_name: str = "kubernetes.default.svc.cluster.local") -> str | None:
    """Run a pod on the node that resolves ``dns_name`` and prints a marker; None when its log came
    back through the apiserver with both, else the most telling reason it did not."""
    core, name = core_api(kubeconfig), f"shipline-node-probe-{int(time.time() * 1000)}"
    script = f"nslookup {dns_name} >/dev/null && echo {PROBE_OUTPUT}"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
           "spec": {**selector(), "restartPolicy": "Never", "automountServiceAccountToken": False,
                    "containers": [{"name": "probe", "image": image, "command": ["sh", "-c", script]}]}}
    core.create_namespaced_pod("default", pod)
    try:
        phase = _wait_done(core, name)
        log = core.read_namespaced_pod_log(name, "default") if phase in ("Succeeded", "Failed") else ""
        if PROBE_OUTPUT in log:
            return None
        if phase == "Failed":
            return f"the probe pod ran but could not resolve {dns_name} (cluster DNS): {log.strip()[-300:]}"
        return f"the probe pod did not run ({phase}): {pod_problem(core, name, 'default')}"
    finally:
        core.delete_namespaced_pod(name, "default", grace_period_seconds=0)


def drain(kubeconfig: Path, node_name: str) -> bool:
    """Delete every pod bound to the node (the kubelet tears their sandboxes down); False when the
    control plane is gone already."""
    try:
        core = core_api(kubeconfig)
        for pod in core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node_name}").items:
            core.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0)
    except (ApiException, OSError):
        return False
    return True


def pod_problem(core: client.CoreV1Api, name: str, namespace: str) -> str:
    """The most telling reason a pod is not running: a container's waiting/terminated message,
    else the latest warning event (e.g. ``FailedCreatePodSandBox: ... runc create failed ...``)."""
    try:
        pod = core.read_namespaced_pod(name, namespace)
        for status in pod.status.container_statuses or []:
            state = status.state
            if state.waiting and state.waiting.message:
                return f"{state.waiting.reason}: {state.waiting.message}"
            if state.terminated and state.terminated.exit_code:
                return f"exit {state.terminated.exit_code}: {state.terminated.message or state.terminated.reason}"
        events = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}").items
    except ApiException as exc:
        return f"cannot read pod {namespace}/{name}: {exc.status} {exc.reason}"
    warnings = [e for e in events if e.type == "Warning"]
    latest = max(warnings, key=lambda e: str(e.last_timestamp or e.event_time or ""), default=None)
    return f"{latest.reason}: {latest.message}" if latest else f"pod phase {pod.status.phase}, no warning event"


def _wait_done(core: client.CoreV1Api, name: str) -> str:
    deadline = time.monotonic() + PROBE_TIMEOUT
    while time.monotonic() < deadline:
        phase = core.read_namespaced_pod(name, "default").status.phase
        if phase in ("Succeeded", "Failed"):
            return str(phase)
        time.sleep(0.5)
    return "not finished"
