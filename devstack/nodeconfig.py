"""The real node's configuration files: containerd (with the stack's registry as a plain-HTTP
mirror), the CNI bridge network, and the kubelet. Pure functions of a ``NodeLayout``, so the
files can be checked without a kernel that runs containers.

containerd is Debian's 1.6: kubelet 1.36 still accepts it (it lacks the ``RuntimeConfig`` CRI call,
so the kubelet falls back to its own ``cgroupDriver``; 1.37 drops that fallback) — see
``devstack.realnode``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

NODE_LABEL = "shipline.dev/real-node"
"""On the real node as a label (``true``) and a ``NoSchedule`` taint: only pods that select and
tolerate it land there. kwok manages only nodes annotated ``kwok.x-k8s.io/node=fake``."""
CNI_DIR = Path("/usr/lib/cni")
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")
COREDNS_READY_PORT = 8181


@dataclass(frozen=True)
class NodeLayout:
    """Where everything of one real node lives, and the names and addresses it takes.

    The node has its own network namespace ``shl<id>``: containerd, the pods' bridge, kube-proxy's
    iptables rules and CoreDNS live there, apart from the host and from any other stack's node.
    A veth pair links it to the host (``host_ip`` ↔ ``node_ip``); the kubelet stays on the host and
    serves on ``host_ip`` (the node's address: never a loopback one, the kubelet refuses that)."""

    state_dir: Path
    """``<cluster state>/node``: configs, containerd's root and state, kubelet's root, pod logs."""
    socket_dir: Path
    """Short path for unix sockets (108-byte limit): ``/run/shipline-node/<id>``."""
    node_name: str
    node_id: str
    index: int
    """``n`` of the node's networks: pods ``10.233.n.0/24``, the host link ``10.234.n.0/30``."""
    cgroup_root: str
    """``/shipline-<id>``: this node's pods live below it, apart from any other node on the host."""
    registry_host: str
    pause_image: str
    kubelet_port: int
    kubelet_healthz_port: int
    snapshotter: str = "overlayfs"
    restrict_oom_score_adj: bool = False
    """True without CAP_SYS_RESOURCE: runc cannot lower ``oom_score_adj`` below containerd's own."""

    @property
    def netns(self) -> str:
        return f"shl{self.node_id}"

    @property
    def bridge(self) -> str:
        return f"shl{self.node_id}b"

    @property
    def subnet(self) -> str:
        return f"10.233.{self.index}.0/24"

    @property
    def gateway(self) -> str:
        """The bridge's address: the pods' gateway, their DNS server, the relay to the host's servers."""
        return f"10.233.{self.index}.1"

    @property
    def host_ip(self) -> str:
        return f"10.234.{self.index}.1"

    @property
    def node_ip(self) -> str:
        return f"10.234.{self.index}.2"

    @property
    def containerd_socket(self) -> Path:
        return self.socket_dir / "containerd.sock"

    @property
    def containerd_config(self) -> Path:
        return self.state_dir / "containerd" / "config.toml"

    @property
    def certs_dir(self) -> Path:
        return self.state_dir / "containerd" / "certs.d"

    @property
    def cni_conf_dir(self) -> Path:
        return self.state_dir / "cni" / "net.d"

    @property
    def kubelet_config(self) -> Path:
        return self.state_dir / "kubelet.yaml"

    @property
    def kubelet_root(self) -> Path:
        return self.state_dir / "kubelet"

def containerd_toml(layout: NodeLayout) -> str:
    """containerd 1.6 (config version 2): own root, state and socket; CRI with runc (cgroupfs),
    CNI from ``layout.cni_conf_dir``, registries from ``certs.d`` (``hosts.toml``)."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    runc = f"{cri}.containerd.runtimes.runc"
    return "\n".join([
        "version = 2",
        f"root = {_q(layout.state_dir / 'containerd' / 'root')}",
        f"state = {_q(layout.state_dir / 'containerd' / 'state')}",
        "[grpc]",
        f"  address = {_q(layout.containerd_socket)}",
        "[ttrpc]",
        f"  address = {_q(layout.socket_dir / 'containerd.sock.ttrpc')}",
        f"[{cri}]",
        f"  sandbox_image = {_q(layout.pause_image)}",
        f"  restrict_oom_score_adj = {_b(layout.restrict_oom_score_adj)}",
        f"  stream_server_address = {_q(layout.node_ip)}",  # the kubelet, on the host, streams from it
        "  netns_mounts_under_state_dir = true",  # so a stop can unmount what a crash left
        f"[{cri}.containerd]",
        f"  snapshotter = {_q(layout.snapshotter)}",
        "  default_runtime_name = \"runc\"",
        f"[{runc}]",
        "  runtime_type = \"io.containerd.runc.v2\"",
        f"[{runc}.options]",
        "  SystemdCgroup = false",
        f"[{cri}.cni]",
        f"  bin_dir = {_q(CNI_DIR)}",
        f"  conf_dir = {_q(layout.cni_conf_dir)}",
        f"[{cri}.registry]",
        f"  config_path = {_q(layout.certs_dir)}",
        "",
    ])


def hosts_toml(registry_host: str) -> str:
    """The stack's registry speaks plain HTTP on 127.0.0.1: pull from it without TLS."""
    url = f"http://{registry_host}"
    return "\n".join([f"server = {_q(url)}", f"[host.{_q(url)}]", '  capabilities = ["pull", "resolve"]',
                      "  skip_verify = true", ""])


def cni_conflist(layout: NodeLayout) -> str:
    """bridge + host-local (+ portmap); containerd brings ``lo`` up with the loopback plugin."""
    return json.dumps({
        "cniVersion": "0.4.0",
        "name": f"shipline-{layout.bridge}",
        "plugins": [
            {"type": "bridge", "bridge": layout.bridge, "isGateway": True, "ipMasq": False, "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": layout.subnet, "gateway": layout.gateway}]],
                      "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(layout.state_dir / "cni" / "ipam")}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }, indent=2) + "\n"


def kubelet_yaml(layout: NodeLayout, *, ca_crt: Path) -> str:
    """The kubelet's own settings: cgroup v1 accepted, cgroupfs, webhook authn/z (the apiserver
    calls in with its client cert; the kubelet serves a self-signed cert on the host end of the
    node's link only), pods' DNS on the bridge (CoreDNS), eviction thresholds low enough for a
    shared development disk."""
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": layout.cgroup_root,
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "address": layout.host_ip,
        "port": layout.kubelet_port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": layout.kubelet_healthz_port,
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(ca_crt)}},
        "authorization": {"mode": "Webhook"},
        "failSwapOn": False,
        "podLogsDir": str(layout.state_dir / "pod-logs"),
        "resolvConf": "",  # the host's resolvers mean nothing in the node's namespace
        "registerWithTaints": [{"key": NODE_LABEL, "value": "true", "effect": "NoSchedule"}],
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                         "nodefs.inodesFree": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "maxPods": 50,
        "clusterDomain": "cluster.local",
        "clusterDNS": [layout.gateway],
    }
    return yaml.safe_dump(config, sort_keys=False)


def _q(value: object) -> str:
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def _b(value: bool) -> str:
    return "true" if value else "false"


def kube_proxy_yaml(layout: NodeLayout, kubeconfig: Path) -> str:
    """iptables mode, in the node's namespace: Services for its pods, NodePorts on the node end of
    the link only (reachable from the host), no touching of host-wide conntrack sysctls."""
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": layout.node_name,
        "clusterCIDR": layout.subnet,
        "bindAddress": layout.node_ip,
        "healthzBindAddress": "127.0.0.1:10256",  # the node namespace's own loopback: no other stack's
        "metricsBindAddress": "127.0.0.1:10249",
        "nodePortAddresses": [f"{layout.node_ip}/32"],
        "iptables": {"localhostNodePorts": False, "masqueradeAll": False},
        "conntrack": {"maxPerCore": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
    }
    return yaml.safe_dump(config, sort_keys=False)


def corefile(layout: NodeLayout, kubeconfig: Path) -> str:
    """Cluster DNS for the node's pods, on the bridge address; names outside the cluster do not
    resolve (the dev stack has no upstream). ``ready`` answers 200 on ``:8181`` of the same address
    once the kubernetes plugin has synced with the apiserver (before that it answers no name)."""
    return "\n".join([
        ".:53 {",
        f"    bind {layout.gateway}",
        f"    ready {layout.gateway}:{COREDNS_READY_PORT}",
        "    errors",
        "    kubernetes cluster.local in-addr.arpa ip6.arpa {",
        f"        kubeconfig {kubeconfig}",
        "        pods insecure",
        "    }",
        "    cache 30",
        "    loadbalance",
        "}",
        "",
    ])
