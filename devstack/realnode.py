"""A real node beside the kwok ones: containerd + runc + a CNI bridge + kube-proxy + CoreDNS and a
kubelet built from the control plane's own pinned modules (``scripts/build-k8s-node.sh``), so
pods really run, reach each other through Services and find them by name.

The node is named ``shipline-node``, labelled and tainted ``shipline.dev/real-node=true``
(``NoSchedule``): only pods that select and tolerate it land there, and kwok, which manages only
nodes annotated ``kwok.x-k8s.io/node=fake``, never claims it. Everything it owns is keyed by the
cluster's state dir (``<id>``): containerd's root/state and kubelet's root under
``<cluster>/node``, sockets under ``/run/shipline-node/<id>``, pods' cgroups below
``/shipline-<id>``, and its own network namespace ``shl<id>`` (``devstack.nodeconfig``) holding
containerd, the pods' bridge, kube-proxy and CoreDNS, so two stacks' nodes never share iptables
rules. ``devstack.noderelay`` makes the stack's loopback servers (apiserver, registry, git)
answer at the same ``127.0.0.1:<port>`` inside that namespace and at ``<bridge>:<port>`` for pods.
Images come from the stack's registry, a plain-HTTP mirror for containerd (``hosts.toml``); the
pod sandbox image is Debian's static ``catatonit -P``, pushed there as ``base/pause``.

``start`` checks the host for real (``devstack.nodehost``), boots, waits for the Node to be Ready
and runs a probe pod that must resolve a Service name and whose log must come back through the
apiserver. When the host refuses something it raises ``NodeUnavailable`` with the exact reason,
stops what it started, and writes the reason to ``<cluster>/node/unavailable`` (read by
``dev status`` and by the tests that need the node).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from devstack import nodeapi
from devstack.debianbase import has_image, import_image, push
from devstack.kube import KubeCluster
from devstack.kubebins import REPO_ROOT
from devstack.nodeapi import selector
from devstack.nodeconfig import (
    COREDNS_READY_PORT,
    NodeLayout,
    cni_conflist,
    containerd_toml,
    corefile,
    hosts_toml,
    kube_proxy_yaml,
    kubelet_yaml,
)
from devstack.nodehost import (
    Refused,
    check,
    delete_netns,
    ensure_netns,
    in_netns,
    kill_shims,
    pick_index,
    remove_cgroup_root,
    unmount_below,
)
from devstack.process import Daemon, StackError, cached_output, free_port

__all__ = ["NODE_NAME", "NodeUnavailable", "RealNode", "selector", "unavailable_reason"]
NODE_NAME = "shipline-node"
SCRIPTS = REPO_ROOT / "scripts"
SOCKET_ROOT = Path("/run/shipline-node")
PAUSE_REPOSITORY = "base/pause"
CATATONIT = Path("/usr/bin/catatonit")
READY_TIMEOUT = 60.0
DRAIN_TIMEOUT = 30.0
DAEMONS = ("relay", "containerd", "kubelet", "kube-proxy", "coredns")


class NodeUnavailable(StackError):
    """The real node cannot run here; the message is the host's exact refusal."""


@dataclass
class RealNode:
    layout: NodeLayout
    kubeconfig: Path
    bin_dir: Path
    relay_ports: tuple[int, ...]
    adaptations: tuple[str, ...] = ()

    @classmethod
    def start(cls, cluster: KubeCluster, *, registry_host: str, images_state_dir: Path, probe_image: str,
              relay_ports: Sequence[int] = ()) -> RealNode:
        """Start (or reuse) the node of ``cluster``; ``NodeUnavailable`` says why it cannot run.
        ``relay_ports``: the stack's loopback servers the node must reach (the apiserver's and the
        registry's are always relayed)."""
        node_dir = cluster.state_dir / "node"
        reason_file = node_dir / "unavailable"
        previous = cls.load(node_dir)
        if previous is not None and previous.running() and nodeapi.node_ready(previous.kubeconfig, NODE_NAME):
            return previous
        if previous is not None:
            previous.stop()
        ports = tuple(sorted({cluster.api_port, int(registry_host.rsplit(":", 1)[1]), *relay_ports}))
        try:
            node = cls._boot(cluster, node_dir, registry_host, images_state_dir, probe_image, ports)
        except (Refused, NodeUnavailable) as exc:
            node_dir.mkdir(parents=True, exist_ok=True)
            reason_file.write_text(f"{exc}\n")
            raise NodeUnavailable(str(exc)) from None
        reason_file.unlink(missing_ok=True)
        return node

    @classmethod
    def _boot(cls, cluster: KubeCluster, node_dir: Path, registry_host: str, images_state_dir: Path,
              probe_image: str, relay_ports: tuple[int, ...]) -> RealNode:
        node_id = hashlib.sha256(str(cluster.state_dir).encode()).hexdigest()[:8]
        host = check(f"/shipline-{node_id}")
        delete_netns(f"shl{node_id}")  # ours (keyed by the cluster's dir), left by a run that died
        layout = NodeLayout(
            state_dir=node_dir, socket_dir=SOCKET_ROOT / node_id, node_name=NODE_NAME, node_id=node_id,
            index=pick_index(int(node_id, 16)), cgroup_root=f"/shipline-{node_id}", registry_host=registry_host,
            pause_image=push_pause_image(images_state_dir, registry_host), kubelet_port=free_port(),
            kubelet_healthz_port=free_port(), snapshotter=host.snapshotter,
            restrict_oom_score_adj=host.restrict_oom_score_adj)
        node = cls(layout=layout, kubeconfig=cluster.kubeconfig, bin_dir=node_binaries(), relay_ports=relay_ports,
                   adaptations=host.adaptations)
        try:
            node._write_configs(cluster)
            ensure_netns(layout.netns, host_ip=layout.host_ip, node_ip=layout.node_ip, pod_subnet=layout.subnet,
                         bridge=layout.bridge, gateway=layout.gateway)
            node._save()
            node._start_daemons()
            nodeapi.point_kubernetes_service(cluster.kubeconfig, layout.gateway, cluster.api_port)
            problem = nodeapi.probe(cluster.kubeconfig, probe_image)
            if problem:
                raise NodeUnavailable(problem)
        except BaseException:
            node.stop()
            raise
        return node

    # -- files and daemons ----------------------------------------------------------------------------

    def _write_configs(self, cluster: KubeCluster) -> None:
        layout = self.layout
        for directory in (layout.certs_dir / layout.registry_host, layout.cni_conf_dir, layout.socket_dir,
                          layout.kubelet_root, layout.state_dir / "pod-logs"):
            directory.mkdir(parents=True, exist_ok=True)
        layout.containerd_config.write_text(containerd_toml(layout))
        (layout.certs_dir / layout.registry_host / "hosts.toml").write_text(hosts_toml(layout.registry_host))
        (layout.cni_conf_dir / "10-shipline.conflist").write_text(cni_conflist(layout))
        layout.kubelet_config.write_text(kubelet_yaml(layout, ca_crt=cluster.pki.ca_crt))
        (layout.state_dir / "kube-proxy.yaml").write_text(kube_proxy_yaml(layout, self.kubeconfig))
        (layout.state_dir / "Corefile").write_text(corefile(layout, self.kubeconfig))

    def daemon(self, name: str) -> Daemon:
        return Daemon(name, run_dir=self.layout.state_dir / "run")

    def _start_daemons(self) -> None:
        layout, netns = self.layout, self.layout.netns
        relay = self.daemon("relay")
        relay.start([sys.executable, "-m", "devstack.noderelay", "--netns", netns, "--address", "127.0.0.1",
                     "--address", layout.gateway, *map(str, self.relay_ports)], cwd=REPO_ROOT)
        self._until(lambda: "relaying" in _read(relay.log_file), 30, "the relay's listeners", relay)
        containerd = self.daemon("containerd")
        containerd.start(in_netns(netns, ["containerd", "--config", str(layout.containerd_config)]))
        self._until(lambda: layout.containerd_socket.exists(), 30, "containerd socket", containerd)
        self.daemon("kube-proxy").start(in_netns(netns, [
            str(self.bin_dir / "kube-proxy"), f"--config={layout.state_dir / 'kube-proxy.yaml'}"]))
        self.daemon("coredns").start(in_netns(netns, [str(coredns_binary()), "-conf",
                                                      str(layout.state_dir / "Corefile")]))
        self.daemon("kubelet").start([
            str(self.bin_dir / "kubelet"), f"--config={layout.kubelet_config}", f"--kubeconfig={self.kubeconfig}",
            f"--root-dir={layout.kubelet_root}", f"--hostname-override={NODE_NAME}", f"--node-ip={layout.host_ip}",
            f"--node-labels={nodeapi.NODE_LABEL}=true", "--v=1"])
        self._until(lambda: nodeapi.node_ready(self.kubeconfig, NODE_NAME), READY_TIMEOUT, f"node {NODE_NAME} Ready",
                    self.daemon("kubelet"))
        for name in ("kube-proxy", "coredns"):
            if not self.daemon(name).running():
                raise NodeUnavailable(f"{name} exited\n{_tail(self.daemon(name).log_file)}")
        dns_ready = f"http://{layout.gateway}:{COREDNS_READY_PORT}/ready"  # the host routes to the bridge
        self._until(lambda: _answers(dns_ready), READY_TIMEOUT, "CoreDNS synced with the apiserver",
                    self.daemon("coredns"))

    def running(self) -> bool:
        return all(self.daemon(name).running() for name in DAEMONS)

    def _until(self, ready: Callable[[], bool], timeout: float, what: str, daemon: Daemon) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if not daemon.running():
                raise NodeUnavailable(f"{daemon.name} exited while waiting for {what}\n{_tail(daemon.log_file)}")
            if time.monotonic() > deadline:
                raise NodeUnavailable(f"{what} not reached within {timeout:.0f}s\n{_tail(daemon.log_file)}")
            time.sleep(0.3)

    # -- stop -----------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Pods off the node (their sandboxes torn down by the kubelet), then the daemons, then
        whatever the host still holds: shims, mounts, the namespace, the cgroups."""
        if self.daemon("kubelet").running() and nodeapi.drain(self.kubeconfig, NODE_NAME):
            deadline = time.monotonic() + DRAIN_TIMEOUT
            while self._tasks() and time.monotonic() < deadline:
                time.sleep(0.5)
        for name in ("kubelet", "kube-proxy", "coredns"):
            self.daemon(name).stop()
        kill_shims(self.layout.containerd_socket)
        self.daemon("containerd").stop()
        self.daemon("relay").stop()
        unmount_below(self.layout.state_dir)
        delete_netns(self.layout.netns)
        remove_cgroup_root(self.layout.cgroup_root)

    def _tasks(self) -> list[str]:
        done = subprocess.run(["ctr", "--address", str(self.layout.containerd_socket), "-n", "k8s.io", "tasks",
                               "ls", "-q"], capture_output=True, text=True, timeout=10)
        return done.stdout.split() if done.returncode == 0 else []

    # -- state ----------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        layout = self.layout
        return {"name": NODE_NAME, "address": layout.host_ip, "pod_subnet": layout.subnet,
                "network_namespace": layout.netns, "cgroup_root": layout.cgroup_root,
                "relayed_ports": list(self.relay_ports), "running": self.running(),
                "ready": nodeapi.node_ready(self.kubeconfig, NODE_NAME), "adaptations": list(self.adaptations),
                "logs": str(layout.state_dir / "run")}

    def _save(self) -> None:
        data = {"layout": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self.layout).items()},
                "kubeconfig": str(self.kubeconfig), "bin_dir": str(self.bin_dir),
                "relay_ports": list(self.relay_ports), "adaptations": list(self.adaptations)}
        (self.layout.state_dir / "node.json").write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, node_dir: Path) -> RealNode | None:
        try:
            data = json.loads((node_dir / "node.json").read_text())
            layout = data["layout"]
            layout.update(state_dir=Path(layout["state_dir"]), socket_dir=Path(layout["socket_dir"]))
            return cls(layout=NodeLayout(**layout), kubeconfig=Path(data["kubeconfig"]),
                       bin_dir=Path(data["bin_dir"]), relay_ports=tuple(data["relay_ports"]),
                       adaptations=tuple(data["adaptations"]))
        except (OSError, ValueError, TypeError, KeyError):
            return None


def unavailable_reason(cluster_state_dir: Path) -> str | None:
    """Why the last start of this cluster's real node failed, or None."""
    try:
        return (cluster_state_dir / "node" / "unavailable").read_text().strip() or None
    except OSError:
        return None


def node_binaries() -> Path:
    """kubelet and kube-proxy from ``scripts/build-k8s-node.sh`` (a no-op once cached)."""
    return _built("build-k8s-node.sh", "kubelet")


def coredns_binary() -> Path:
    return _built("build-coredns.sh", "coredns") / "coredns"


def _built(script: str, binary: str) -> Path:
    return cached_output(SCRIPTS / script, f"run scripts/{script}", expect=(binary,), timeout=3600,
                         error=NodeUnavailable)


def push_pause_image(state_dir: Path, registry_host: str) -> str:
    """``<registry>/base/pause:catatonit``: Debian's static ``catatonit -P`` as the pod sandbox."""
    if not CATATONIT.exists():
        raise Refused(f"{CATATONIT} not found: apt-get install catatonit")
    ref = f"{registry_host}/{PAUSE_REPOSITORY}:catatonit"
    if not has_image(state_dir, ref):
        import_image(state_dir, ref, [(CATATONIT, "/catatonit")], ["--entrypoint", '["/catatonit", "-P"]'])
    push(state_dir, ref)
    return ref


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2, trust_env=False).status_code == 200  # never via a proxy
    except httpx.HTTPError:
        return False


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _tail(log: Path, lines: int = 15) -> str:
    if not log.exists():
        return f"(no log at {log})"
    return f"--- last lines of {log} ---\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


# -- the dev stack's hooks (devstack.stack) ----------------------------------------------------------

def start_for_stack(cluster: KubeCluster, *, registry_host: str, images_state_dir: Path, probe_image: str,
                    relay_ports: Sequence[int] = (), progress: Any = print) -> RealNode | None:
    """``shipline dev up``: start the node when the host allows it; else say exactly why and go on."""
    progress("starting the real node (containerd, kubelet, kube-proxy, CoreDNS) beside the kwok nodes")
    try:
        node = RealNode.start(cluster, registry_host=registry_host, images_state_dir=images_state_dir,
                              probe_image=probe_image, relay_ports=relay_ports)
    except NodeUnavailable as exc:
        progress(f"the real node is not running, the stack starts without it: {exc}")
        return None
    for adaptation in node.adaptations:
        progress(f"real node: {adaptation}")
    return node


def stop_for_stack(cluster_state_dir: Path) -> None:
    node = RealNode.load(cluster_state_dir / "node")
    if node is not None:
        node.stop()


def status_for_stack(cluster_state_dir: Path) -> dict[str, Any]:
    node = RealNode.load(cluster_state_dir / "node")
    reason = unavailable_reason(cluster_state_dir)
    if node is None or reason:
        return {"running": False, "unavailable": reason}
    return node.status()
