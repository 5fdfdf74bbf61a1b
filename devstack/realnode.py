"""A real node beside the kwok ones: containerd + runc + a CNI bridge + a kubelet built from the
control plane's own pinned modules (``scripts/build-k8s-node.sh``), so pods really run.

The node is named ``shipline-node``, labelled and tainted ``shipline.dev/real-node=true``
(``NoSchedule``): only pods that select and tolerate it land there, and kwok, which manages only
nodes annotated ``kwok.x-k8s.io/node=fake``, never claims it. Everything it owns is keyed by the
cluster's state dir: containerd's root/state and kubelet's root under ``<cluster>/node``, sockets
under ``/run/shipline-node/<id>``, the bridge ``shl<id>`` (its ``.1`` is the node's address: the
kubelet refuses a loopback one), pods' cgroups below ``/shipline-<id>``. Images come from the
stack's registry, a plain-HTTP mirror for containerd (``hosts.toml``); the pod sandbox image is
Debian's static ``catatonit -P``, pushed there as ``base/pause``.

``start`` checks the host for real (``devstack.nodehost``), boots, waits for the Node to be Ready
and runs a probe pod whose log must come back through the apiserver. When the host refuses
something, it raises ``NodeUnavailable`` with the exact reason, stops what it started, and writes
the reason to ``<cluster>/node/unavailable`` (read by ``dev status`` and the tests that need it).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from devstack.debianbase import has_image, import_image, push
from devstack.kube import KubeCluster
from devstack.kubebins import REPO_ROOT
from devstack.nodeconfig import NODE_LABEL, NodeLayout, cni_conflist, containerd_toml, hosts_toml, kubelet_yaml
from devstack.nodehost import (
    Refused,
    check,
    delete_bridge,
    ensure_bridge,
    kill_shims,
    pick_subnet,
    remove_cgroup_root,
    unmount_below,
)
from devstack.process import Daemon, StackError, free_port

NODE_NAME = "shipline-node"
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-k8s-node.sh"
SOCKET_ROOT = Path("/run/shipline-node")
PAUSE_REPOSITORY = "base/pause"
CATATONIT = Path("/usr/bin/catatonit")
READY_TIMEOUT = 60.0
PROBE_TIMEOUT = 90.0
"""Scheduling, two image pulls from the local registry, one short container: seconds, unless loaded."""
DRAIN_TIMEOUT = 30.0
PROBE_OUTPUT = "shipline-node-probe-ok"


class NodeUnavailable(StackError):
    """The real node cannot run here; the message is the host's exact refusal."""


def selector() -> dict[str, Any]:
    """What a pod spec needs to land on the real node: merge into ``spec``."""
    return {"nodeSelector": {NODE_LABEL: "true"},
            "tolerations": [{"key": NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}]}


@dataclass
class RealNode:
    layout: NodeLayout
    kubeconfig: Path
    bin_dir: Path
    adaptations: tuple[str, ...] = ()

    @classmethod
    def start(cls, cluster: KubeCluster, *, registry_host: str, images_state_dir: Path,
              probe_image: str) -> RealNode:
        """Start (or reuse) the node of ``cluster``; ``NodeUnavailable`` says why it cannot run."""
        node_dir = cluster.state_dir / "node"
        reason_file = node_dir / "unavailable"
        previous = cls.load(node_dir)
        if previous is not None and previous.running() and previous._ready():
            return previous
        if previous is not None:
            previous.stop()
        try:
            node = cls._boot(cluster, node_dir, registry_host, images_state_dir, probe_image)
        except (Refused, NodeUnavailable) as exc:
            node_dir.mkdir(parents=True, exist_ok=True)
            reason_file.write_text(f"{exc}\n")
            raise NodeUnavailable(str(exc)) from None
        reason_file.unlink(missing_ok=True)
        return node

    @classmethod
    def _boot(cls, cluster: KubeCluster, node_dir: Path, registry_host: str, images_state_dir: Path,
              probe_image: str) -> RealNode:
        node_id = hashlib.sha256(str(cluster.state_dir).encode()).hexdigest()[:8]
        cgroup_root = f"/shipline-{node_id}"
        host = check(cgroup_root)
        layout = NodeLayout(
            state_dir=node_dir, socket_dir=SOCKET_ROOT / node_id, node_name=NODE_NAME, bridge=f"shl{node_id}",
            subnet=pick_subnet(int(node_id, 16)), cgroup_root=cgroup_root, registry_host=registry_host,
            pause_image=push_pause_image(images_state_dir, registry_host), kubelet_port=free_port(),
            kubelet_healthz_port=free_port(), snapshotter=host.snapshotter,
            restrict_oom_score_adj=host.restrict_oom_score_adj)
        node = cls(layout=layout, kubeconfig=cluster.kubeconfig, bin_dir=node_binaries(),
                   adaptations=host.adaptations)
        try:
            node._write_configs(cluster)
            ensure_bridge(layout.bridge, layout.gateway)
            node._save()
            node._start_daemons()
            node._wait_ready()
            node._probe(probe_image)
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

    def daemon(self, name: str) -> Daemon:
        return Daemon(name, run_dir=self.layout.state_dir / "run")

    def _start_daemons(self) -> None:
        containerd = self.daemon("containerd")
        containerd.start(["containerd", "--config", str(self.layout.containerd_config)])
        self._until(lambda: self.layout.containerd_socket.exists(), 30, "containerd socket", containerd)
        self.daemon("kubelet").start([
            str(self.bin_dir / "kubelet"), f"--config={self.layout.kubelet_config}",
            f"--kubeconfig={self.kubeconfig}", f"--root-dir={self.layout.kubelet_root}",
            f"--hostname-override={NODE_NAME}", f"--node-ip={self.layout.gateway}",
            f"--node-labels={NODE_LABEL}=true", "--v=1",
        ])

    def running(self) -> bool:
        return self.daemon("containerd").running() and self.daemon("kubelet").running()

    def _until(self, check: Any, timeout: float, what: str, daemon: Daemon) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if not daemon.running():
                raise NodeUnavailable(f"{daemon.name} exited while waiting for {what}\n{_tail(daemon.log_file)}")
            if time.monotonic() > deadline:
                raise NodeUnavailable(f"{what} not reached within {timeout:.0f}s\n{_tail(daemon.log_file)}")
            time.sleep(0.3)

    # -- readiness and the probe pod ------------------------------------------------------------------

    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(config.new_client_from_config(config_file=str(self.kubeconfig)))

    def _ready(self) -> bool:
        try:
            node = self.core().read_node(NODE_NAME)
        except (ApiException, OSError):
            return False
        return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])

    def _wait_ready(self) -> None:
        self._until(self._ready, READY_TIMEOUT, f"node {NODE_NAME} Ready", self.daemon("kubelet"))

    def _probe(self, image: str) -> None:
        """A pod that must run here and whose log must come back: the whole path, for real."""
        core, name = self.core(), f"shipline-node-probe-{int(time.time())}"
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
               "spec": {**selector(), "restartPolicy": "Never", "automountServiceAccountToken": False,
                        "containers": [{"name": "probe", "image": image,
                                        "command": ["sh", "-c", f"echo {PROBE_OUTPUT}"]}]}}
        core.create_namespaced_pod("default", pod)
        try:
            phase = self._wait_pod_done(core, name)
            log = core.read_namespaced_pod_log(name, "default") if phase == "Succeeded" else ""
            if PROBE_OUTPUT not in log:
                raise NodeUnavailable(f"the probe pod did not run ({phase}): {pod_problem(core, name, 'default')}")
        finally:
            core.delete_namespaced_pod(name, "default", grace_period_seconds=0)

    def _wait_pod_done(self, core: client.CoreV1Api, name: str) -> str:
        deadline = time.monotonic() + PROBE_TIMEOUT
        while time.monotonic() < deadline:
            phase = core.read_namespaced_pod(name, "default").status.phase
            if phase in ("Succeeded", "Failed"):
                return str(phase)
            time.sleep(0.5)
        return "not finished"

    # -- stop -----------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Pods off the node (their sandboxes torn down by the kubelet), then the daemons, then
        whatever the host still holds: shims, mounts, the bridge, the cgroups."""
        if self.running():
            self._drain()
        self.daemon("kubelet").stop()
        kill_shims(self.layout.containerd_socket)
        self.daemon("containerd").stop()
        unmount_below(self.layout.state_dir)
        delete_bridge(self.layout.bridge)
        remove_cgroup_root(self.layout.cgroup_root)

    def _drain(self) -> None:
        try:
            core = self.core()
            pods = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={NODE_NAME}").items
            for pod in pods:
                core.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0)
        except (ApiException, OSError):
            return  # the control plane is gone already: the host clean-up below still runs
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while self._tasks() and time.monotonic() < deadline:
            time.sleep(0.5)

    def _tasks(self) -> list[str]:
        done = subprocess.run(["ctr", "--address", str(self.layout.containerd_socket), "-n", "k8s.io", "tasks",
                               "ls", "-q"], capture_output=True, text=True, timeout=10)
        return done.stdout.split() if done.returncode == 0 else []

    # -- state ----------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {"name": NODE_NAME, "address": self.layout.gateway, "pod_subnet": self.layout.subnet,
                "bridge": self.layout.bridge, "cgroup_root": self.layout.cgroup_root,
                "running": self.running(), "ready": self._ready(), "adaptations": list(self.adaptations),
                "logs": str(self.layout.state_dir / "run")}

    def _save(self) -> None:
        data = {"layout": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self.layout).items()},
                "kubeconfig": str(self.kubeconfig), "bin_dir": str(self.bin_dir),
                "adaptations": list(self.adaptations)}
        (self.layout.state_dir / "node.json").write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, node_dir: Path) -> RealNode | None:
        try:
            data = json.loads((node_dir / "node.json").read_text())
            layout = data["layout"]
            layout.update(state_dir=Path(layout["state_dir"]), socket_dir=Path(layout["socket_dir"]))
            return cls(layout=NodeLayout(**layout), kubeconfig=Path(data["kubeconfig"]),
                       bin_dir=Path(data["bin_dir"]), adaptations=tuple(data["adaptations"]))
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
    done = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=3600)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines or not (Path(lines[-1]) / "kubelet").exists():
        tail = "\n".join(done.stderr.strip().splitlines()[-20:])
        raise NodeUnavailable(f"building kubelet failed ({done.returncode}): run {BUILD_SCRIPT}\n{tail}")
    return Path(lines[-1])


def push_pause_image(state_dir: Path, registry_host: str) -> str:
    """``<registry>/base/pause:catatonit``: Debian's static ``catatonit -P`` as the pod sandbox."""
    if not CATATONIT.exists():
        raise Refused(f"{CATATONIT} not found: apt-get install catatonit")
    ref = f"{registry_host}/{PAUSE_REPOSITORY}:catatonit"
    if not has_image(state_dir, ref):
        import_image(state_dir, ref, [(CATATONIT, "/catatonit")], ["--entrypoint", '["/catatonit", "-P"]'])
    push(state_dir, ref)
    return ref


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


def _tail(log: Path, lines: int = 15) -> str:
    if not log.exists():
        return f"(no log at {log})"
    return f"--- last lines of {log} ---\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


# -- the dev stack's hooks (devstack.stack) ----------------------------------------------------------

def start_for_stack(cluster: KubeCluster, *, registry_host: str, images_state_dir: Path, probe_image: str,
                    progress: Any = print) -> RealNode | None:
    """``shipline dev up``: start the node when the host allows it; else say exactly why and go on."""
    progress("starting the real node (containerd, kubelet) beside the kwok nodes")
    try:
        node = RealNode.start(cluster, registry_host=registry_host, images_state_dir=images_state_dir,
                              probe_image=probe_image)
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
