"""The real node's files, read back the way containerd, CNI and the kubelet read them."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import yaml

from devstack.nodeconfig import (
    CNI_DIR,
    NODE_LABEL,
    NodeLayout,
    cni_conflist,
    containerd_toml,
    corefile,
    hosts_toml,
    kube_proxy_yaml,
    kubelet_yaml,
)


def layout(tmp_path: Path, **overrides: object) -> NodeLayout:
    values: dict[str, object] = dict(
        state_dir=tmp_path / "node", socket_dir=Path("/run/shipline-node/ab12cd34"), node_name="shipline-node",
        node_id="ab12cd34", index=17, cgroup_root="/shipline-ab12cd34",
        registry_host="127.0.0.1:5999", pause_image="127.0.0.1:5999/base/pause:catatonit", kubelet_port=41000,
        kubelet_healthz_port=41001)
    values.update(overrides)
    return NodeLayout(**values)  # type: ignore[arg-type]


def test_kubelet_accepts_cgroup_v1_with_cgroupfs_and_taints_its_node(tmp_path: Path) -> None:
    config = yaml.safe_load(kubelet_yaml(layout(tmp_path), ca_crt=tmp_path / "ca.crt"))
    assert config["failCgroupV1"] is False
    assert config["cgroupDriver"] == "cgroupfs"
    assert config["cgroupRoot"] == "/shipline-ab12cd34"
    assert config["registerWithTaints"] == [{"key": NODE_LABEL, "value": "true", "effect": "NoSchedule"}]
    assert config["address"] == "10.234.17.1"  # the host end of the node's link: never a loopback address
    assert config["clusterDNS"] == ["10.233.17.1"]  # CoreDNS on the pods' bridge
    assert config["authentication"]["anonymous"] == {"enabled": False}
    assert config["authorization"] == {"mode": "Webhook"}
    assert config["readOnlyPort"] == 0


def test_containerd_uses_its_own_dirs_runc_with_cgroupfs_and_the_registry_hosts(tmp_path: Path) -> None:
    node = layout(tmp_path, restrict_oom_score_adj=True, snapshotter="native")
    config = tomllib.loads(containerd_toml(node))
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert config["grpc"]["address"] == "/run/shipline-node/ab12cd34/containerd.sock"
    assert config["root"].startswith(str(tmp_path))
    assert cri["sandbox_image"] == "127.0.0.1:5999/base/pause:catatonit"
    assert cri["restrict_oom_score_adj"] is True
    assert cri["containerd"]["snapshotter"] == "native"
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False
    assert cri["registry"]["config_path"] == str(node.certs_dir)
    assert cri["cni"]["conf_dir"] == str(node.cni_conf_dir)
    assert cri["stream_server_address"] == "10.234.17.2"  # the kubelet, on the host, streams from there


def test_the_stack_registry_is_a_plain_http_mirror() -> None:
    hosts = tomllib.loads(hosts_toml("127.0.0.1:5999"))
    assert hosts["server"] == "http://127.0.0.1:5999"
    assert hosts["host"]["http://127.0.0.1:5999"]["capabilities"] == ["pull", "resolve"]


def test_cni_bridge_with_host_local_addresses_and_installed_plugins(tmp_path: Path) -> None:
    conflist = json.loads(cni_conflist(layout(tmp_path)))
    bridge = conflist["plugins"][0]
    assert (bridge["type"], bridge["bridge"]) == ("bridge", "shlab12cd34b")
    assert bridge["ipam"]["type"] == "host-local"
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.233.17.0/24", "gateway": "10.233.17.1"}]]
    for plugin in ("bridge", "host-local", "loopback", *(p["type"] for p in conflist["plugins"])):
        assert (CNI_DIR / plugin).exists(), f"{CNI_DIR / plugin}: apt-get install containernetworking-plugins"


def test_kube_proxy_stays_in_the_node_and_off_host_wide_settings(tmp_path: Path) -> None:
    config = yaml.safe_load(kube_proxy_yaml(layout(tmp_path), tmp_path / "kubeconfig"))
    assert (config["mode"], config["hostnameOverride"], config["clusterCIDR"]) == \
        ("iptables", "shipline-node", "10.233.17.0/24")
    assert config["iptables"]["localhostNodePorts"] is False  # no route_localnet on the host
    assert config["conntrack"]["maxPerCore"] == 0  # no host-wide conntrack sysctl
    assert config["nodePortAddresses"] == ["10.234.17.2/32"]


def test_cluster_dns_serves_the_cluster_domain_on_the_bridge(tmp_path: Path) -> None:
    text = corefile(layout(tmp_path), tmp_path / "kubeconfig")
    assert "bind 10.233.17.1" in text
    assert "ready 10.233.17.1:8181" in text  # the node waits for it before its probe
    assert "kubernetes cluster.local in-addr.arpa ip6.arpa {" in text
    assert f"kubeconfig {tmp_path / 'kubeconfig'}" in text
