"""The real node runs pods for real, beside the kwok nodes, and only pods that ask for it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client, config

from devstack import nodehost, realnode
from devstack.kube import KubeCluster
from devstack.nodeconfig import NODE_LABEL
from devstack.realnode import NODE_NAME, NodeUnavailable, RealNode, selector, unavailable_reason
from devstack.stack import Stack

pytestmark = pytest.mark.stack


@pytest.fixture
def core(kube_cluster: KubeCluster) -> Iterator[client.CoreV1Api]:
    with config.new_client_from_config(config_file=str(kube_cluster.kubeconfig)) as api:
        yield client.CoreV1Api(api)


def run_pod(core: client.CoreV1Api, name: str, spec: dict[str, Any], timeout: float = 90) -> client.V1Pod:
    core.create_namespaced_pod("default", {"apiVersion": "v1", "kind": "Pod",
                                           "metadata": {"name": name, "namespace": "default"}, "spec": spec})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pod = core.read_namespaced_pod(name, "default")
        if pod.status.phase in ("Succeeded", "Failed"):
            return pod
        time.sleep(0.3)
    raise AssertionError(f"pod {name} not finished within {timeout}s: {pod.status}")


def test_a_pod_that_asks_for_the_real_node_runs_there_for_real(real_node: RealNode, core: client.CoreV1Api,
                                                               stack: Stack) -> None:
    script = "cat /proc/self/cgroup | grep -m1 memory; ip -4 -o addr show eth0; echo computed-$((6 * 7))"
    pod = run_pod(core, "real-work", {**selector(), "restartPolicy": "Never", "containers": [
        {"name": "c", "image": stack.base_image, "command": ["sh", "-c", script]}]})
    log = core.read_namespaced_pod_log("real-work", "default")
    assert pod.spec.node_name == NODE_NAME
    assert pod.status.phase == "Succeeded"
    assert "computed-42" in log  # only a container that ran can have said it
    assert f"{real_node.layout.cgroup_root}/kubepods" in log  # in this node's own cgroup tree
    assert real_node.layout.subnet.rsplit(".", 1)[0] + "." in log  # an address of the node's pod network


def test_a_pod_that_does_not_ask_lands_on_kwok_and_never_runs(real_node: RealNode, core: client.CoreV1Api) -> None:
    core.create_namespaced_pod("default", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "fake-work"},
                                           "spec": {"containers": [{"name": "c", "image": "127.0.0.1:1/none:1"}]}})
    deadline = time.monotonic() + 30
    while not (pod := core.read_namespaced_pod("fake-work", "default")).spec.node_name:
        assert time.monotonic() < deadline, "fake-work was never scheduled"
        time.sleep(0.2)
    assert pod.spec.node_name.startswith("kwok-node-")  # the taint keeps it off the real node


def test_the_node_is_real_tainted_and_not_kwoks(real_node: RealNode, core: client.CoreV1Api) -> None:
    node = core.read_node(NODE_NAME)
    assert node.metadata.labels[NODE_LABEL] == "true"
    assert [(t.key, t.effect) for t in node.spec.taints] == [(NODE_LABEL, "NoSchedule")]
    assert "kwok.x-k8s.io/node" not in (node.metadata.annotations or {})
    assert node.status.node_info.container_runtime_version.startswith("containerd://")
    assert node.status.node_info.kubelet_version == "v1.36.3"
    assert {a.type: a.address for a in node.status.addresses}["InternalIP"] == real_node.layout.host_ip


def test_a_refusing_host_stops_the_node_with_the_exact_reason(kube_cluster: KubeCluster, stack: Stack,
                                                             tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    refusal = "mkdir /sys/fs/cgroup/memory/shipline-x: Permission denied"

    def refuse(cgroup_root: str) -> nodehost.Host:
        raise nodehost.Refused(refusal)

    monkeypatch.setattr(realnode, "check", refuse)
    other = KubeCluster(state_dir=tmp_path, bin_dir=kube_cluster.bin_dir, etcd_port=0, etcd_peer_port=0,
                        api_port=kube_cluster.api_port, kcm_port=0, scheduler_port=0)
    with pytest.raises(NodeUnavailable, match="Permission denied"):
        RealNode.start(other, registry_host=stack.registry.host, images_state_dir=stack.state_dir,
                       probe_image=stack.base_image)
    assert unavailable_reason(tmp_path) == refusal


def test_dev_up_says_why_and_goes_on_without_the_node(kube_cluster: KubeCluster, stack: Stack, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(cgroup_root: str) -> nodehost.Host:
        raise nodehost.Refused("creating a network namespace (unshare --net): Operation not permitted")

    monkeypatch.setattr(realnode, "check", refuse)
    other = KubeCluster(state_dir=tmp_path, bin_dir=kube_cluster.bin_dir, etcd_port=0, etcd_peer_port=0,
                        api_port=kube_cluster.api_port, kcm_port=0, scheduler_port=0)
    said: list[str] = []
    node = realnode.start_for_stack(other, registry_host=stack.registry.host, images_state_dir=stack.state_dir,
                                    probe_image=stack.base_image, progress=said.append)
    assert node is None
    assert said[-1] == ("the real node is not running, the stack starts without it: creating a network "
                        "namespace (unshare --net): Operation not permitted")
    assert realnode.status_for_stack(tmp_path) == {
        "running": False, "unavailable": "creating a network namespace (unshare --net): Operation not permitted"}


def test_the_kernel_words_a_refusal() -> None:
    with pytest.raises(nodehost.Refused, match=r"mkdir /proc/shipline-refused: .+"):
        nodehost._mkdir(Path("/proc/shipline-refused"))


def test_pods_reach_a_service_by_name_and_the_host_reaches_its_node_port(real_node: RealNode,
                                                                        core: client.CoreV1Api,
                                                                        stack: Stack) -> None:
    labels = {"app": "web-svc"}
    serve = "mkdir -p /www && echo served-by-web > /www/index.html && exec httpd -f -p 8080 -h /www"
    core.create_namespaced_pod("default", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-svc", "labels": labels},
        "spec": {**selector(), "containers": [{
            "name": "web", "image": stack.base_image, "command": ["sh", "-c", serve],
            "ports": [{"name": "http", "containerPort": 8080}],
            # the kubelet, on the host, probes the pod across the node's link
            "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1}}]}})
    service = core.create_namespaced_service("default", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-svc"},
        "spec": {"type": "NodePort", "selector": labels, "ports": [{"port": 80, "targetPort": "http"}]}})
    node_port = service.spec.ports[0].node_port
    deadline = time.monotonic() + 90
    while not any(c.type == "Ready" and c.status == "True"
                  for c in core.read_namespaced_pod("web-svc", "default").status.conditions or []):
        assert time.monotonic() < deadline, "web-svc never Ready (its readiness probe, from the host)"
        time.sleep(0.5)
    # cluster DNS, then kube-proxy (busybox-static's nslookup and nc: its wget needs NSS, absent here).
    # kube-proxy programs the Service's endpoint after the pod is Ready, on its own clock: until then
    # the Service IP refuses (seen once in CI), so the client tries again for up to 20 s, as clients do.
    fetch = ("ip=$(nslookup web-svc.default.svc.cluster.local | awk '/^Address: /{print $2}' | tail -n1) && "
             "for i in $(seq 40); do out=$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 10 $ip 80 2>/tmp/nc.err "
             "| tail -n1); [ -n \"$out\" ] && break; sleep 0.5; done; echo \"${out:-$(cat /tmp/nc.err)}\"")
    pod = run_pod(core, "web-client", {**selector(), "restartPolicy": "Never", "containers": [
        {"name": "c", "image": stack.base_image, "command": ["sh", "-c", fetch]}]})
    assert (pod.status.phase, core.read_namespaced_pod_log("web-client", "default").strip()) == \
        ("Succeeded", "served-by-web")
    answer = httpx.get(f"http://{real_node.layout.node_ip}:{node_port}/", timeout=10, trust_env=False)
    assert answer.text.strip() == "served-by-web"
