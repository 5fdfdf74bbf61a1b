"""A real local Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver, controller-manager,
scheduler and kwok with fake nodes, so Deployments really roll out without a container runtime.

Every process is a ``Daemon`` under ``<state_dir>/run``; etcd data, PKI, kubeconfig and
``kube.json`` (ports, binaries, startup time) live under ``state_dir``. ``KubeCluster.start`` is
idempotent: a cluster already running under ``state_dir`` is reused. Flags follow kwokctl's
binary runtime (see shared/notes/kubernetes-control-plane.md §4 and §6).
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from devstack.kubebins import find_binaries
from devstack.kubenodes import ensure_nodes, wait_default_service_account, wait_nodes_ready
from devstack.kubepki import CONTEXT, Pki, ensure_pki, write_kubeconfig
from devstack.process import Daemon, StackError, free_port, port_open, wait_until

__all__ = ["CONTEXT", "KubeCluster", "StackError", "find_binaries"]

START_TIMEOUT = 90.0
"""Per component; a cold apiserver on 2 cores needs ~10 s, a loaded CI machine more."""
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
HEALTH_PATHS = "/healthz,/readyz,/livez,/metrics"
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    resources: [{group: "", resources: [pods/status, nodes, nodes/status, events]},
                {group: coordination.k8s.io, resources: [leases]}]
  - level: Request
    verbs: [patch]
  - level: None
"""
"""Every PATCH with its body (server-side applies carry ``fieldManager`` and the object), minus the
fake nodes' and pods' own status traffic."""


NEVER_READY = "never-ready"
"""A pod with an image whose reference contains this never becomes ready on the kwok nodes."""


@dataclass
class KubeCluster:
    """Handle on a control plane under ``state_dir``; ``kubeconfig`` uses context ``shipline-dev``."""

    state_dir: Path
    bin_dir: Path
    etcd_port: int
    etcd_peer_port: int
    api_port: int
    kcm_port: int
    scheduler_port: int
    nodes: int = 2
    startup_seconds: float | None = field(default=None)
    audit_log: str = ""
    """When set, the apiserver writes an audit log there (``AUDIT_POLICY``): used to count applies."""

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def pki(self) -> Pki:
        return Pki(self.state_dir / "pki")

    @classmethod
    def start(cls, state_dir: Path, *, nodes: int = 2) -> KubeCluster:
        """Start (or reuse) the cluster and return once ``nodes`` kwok nodes are Ready and the
        ``default`` ServiceAccount exists; raises ``StackError`` with the failing log's tail."""
        state_dir = state_dir.resolve()
        previous = cls.load(state_dir)
        if previous is not None and previous._all_running() and previous._api_ready():
            previous.nodes = max(previous.nodes, nodes)
            previous._ensure_nodes()
            previous._save()
            return previous
        if previous is not None:
            previous.stop()  # leftovers of a crash: start clean on the same data
        cluster = cls._fresh(state_dir, find_binaries(), nodes, previous)
        try:
            cluster._boot()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def stop(self) -> None:
        """Stop every process (kwok first, etcd last); data, PKI and kubeconfig stay for a restart."""
        for name in reversed(COMPONENTS):
            self._daemon(name).stop()

    def status(self) -> dict[str, Any]:
        return {
            "state_dir": str(self.state_dir),
            "api_url": self.api_url,
            "kubeconfig": str(self.kubeconfig),
            "context": CONTEXT,
            "bin_dir": str(self.bin_dir),
            "nodes": self.nodes,
            "startup_seconds": self.startup_seconds,
            "components": {name: self._daemon(name).pid() for name in COMPONENTS},
            "ready": self._all_running() and self._api_ready(),
        }

    # -- lifecycle -------------------------------------------------------------------------------

    @classmethod
    def _fresh(cls, state_dir: Path, bin_dir: Path, nodes: int, previous: KubeCluster | None) -> KubeCluster:
        ports = _ports(previous)
        return cls(state_dir=state_dir, bin_dir=bin_dir, nodes=nodes, **ports)

    def _boot(self) -> None:
        began = time.monotonic()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        pki = ensure_pki(self.state_dir / "pki")
        write_kubeconfig(self.kubeconfig, server=self.api_url, pki=pki)
        self._save()
        self._launch("etcd", self._etcd_argv(), lambda: _http_ok(f"{self._etcd_url}/health"))
        self._launch("kube-apiserver", self._apiserver_argv(), self._api_ready)
        for name, argv in (("kube-controller-manager", self._kcm_argv()),
                           ("kube-scheduler", self._scheduler_argv()), ("kwok", self._kwok_argv())):
            self._daemon(name).start(argv)
        self._await("kube-controller-manager", lambda: self._https_ok(self.kcm_port, "/healthz"))
        self._await("kube-scheduler", lambda: self._https_ok(self.scheduler_port, "/healthz"))
        self._ensure_nodes()
        self.startup_seconds = round(time.monotonic() - began, 2)
        self._save()

    def _ensure_nodes(self) -> None:
        ensure_nodes(self.kubeconfig, self.nodes)
        self._guarded("kwok", lambda: wait_nodes_ready(self.kubeconfig, self.nodes, timeout=START_TIMEOUT))
        self._guarded("kube-controller-manager",
                      lambda: wait_default_service_account(self.kubeconfig, timeout=START_TIMEOUT))

    def _launch(self, name: str, argv: list[str], ready: Callable[[], bool]) -> None:
        self._daemon(name).start(argv)
        self._await(name, ready)

    def _await(self, name: str, ready: Callable[[], bool]) -> None:
        """Wait for ``ready`` but fail at once, with the log tail, if the process exits."""
        daemon = self._daemon(name)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if not daemon.running():
                raise StackError(f"{name} exited during startup\n{_tail(daemon.log_file)}")
            try:
                wait_until(ready, timeout=min(1.0, deadline - time.monotonic()), what=name,
                           log=daemon.log_file)
                return
            except StackError:
                if time.monotonic() >= deadline:
                    raise

    def _guarded(self, name: str, wait: Callable[[], None]) -> None:
        try:
            wait()
        except StackError as exc:
            raise StackError(f"{exc}\n{_tail(self._daemon(name).log_file)}") from None

    # -- argv --------------------------------------------------------------------------------------

    @property
    def _etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.etcd_port}"

    def _etcd_argv(self) -> list[str]:
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        return [
            str(self.bin_dir / "etcd"), "--name=node0", f"--data-dir={self.state_dir / 'etcd'}",
            f"--listen-client-urls={self._etcd_url}", f"--advertise-client-urls={self._etcd_url}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=node0={peer}", "--unsafe-no-fsync=true",
            "--auto-compaction-retention=1", "--quota-backend-bytes=8589934592", "--log-level=warn",
        ]

    def _apiserver_argv(self) -> list[str]:
        pki = self.pki
        return [
            str(self.bin_dir / "kube-apiserver"), f"--etcd-servers={self._etcd_url}",
            "--etcd-prefix=/registry", "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={self.api_port}", f"--cert-dir={self.state_dir / 'apiserver-certs'}",
            f"--tls-cert-file={pki.admin_crt}", f"--tls-private-key-file={pki.admin_key}",
            f"--client-ca-file={pki.ca_crt}",
            f"--service-account-key-file={pki.admin_key}",
            f"--service-account-signing-key-file={pki.admin_key}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--service-cluster-ip-range=10.96.0.0/16", "--authorization-mode=Node,RBAC",
            "--allow-privileged=true", "--endpoint-reconciler-type=none",
            # One client, loopback: request queuing only slows startup and tests down.
            "--enable-priority-and-fairness=false", "--max-requests-inflight=0",
            "--max-mutating-requests-inflight=0",
            # A real node (devstack.realnode) has no resolvable hostname; its kubelet takes client certs.
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            f"--kubelet-client-certificate={pki.admin_crt}", f"--kubelet-client-key={pki.admin_key}",
            *self._audit_flags(),
        ]

    def _audit_flags(self) -> list[str]:
        if not self.audit_log:
            return []
        policy = self.state_dir / "audit-policy.yaml"
        policy.write_text(AUDIT_POLICY)
        return [f"--audit-policy-file={policy}", f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json", "--audit-log-maxsize=0"]

    def restart_apiserver(self) -> None:
        """Stop and start the apiserver with the current flags (e.g. after setting ``audit_log``)."""
        self._daemon("kube-apiserver").stop()
        self._launch("kube-apiserver", self._apiserver_argv(), self._api_ready)
        self._save()

    def _component_argv(self, name: str, port: int) -> list[str]:
        pki = self.pki
        return [
            str(self.bin_dir / name), f"--kubeconfig={self.kubeconfig}", "--bind-address=127.0.0.1",
            f"--secure-port={port}", f"--tls-cert-file={pki.admin_crt}",
            f"--tls-private-key-file={pki.admin_key}", "--leader-elect=false",
            f"--authorization-always-allow-paths={HEALTH_PATHS}",
            "--kube-api-qps=100", "--kube-api-burst=200",
        ]

    def _kcm_argv(self) -> list[str]:
        return [*self._component_argv("kube-controller-manager", self.kcm_port),
                f"--root-ca-file={self.pki.ca_crt}",
                f"--service-account-private-key-file={self.pki.admin_key}"]

    def _scheduler_argv(self) -> list[str]:
        return self._component_argv("kube-scheduler", self.scheduler_port)

    def _kwok_argv(self) -> list[str]:
        stages = [self._with_never_ready(s) for s in sorted((self.bin_dir / "kwok-stages").glob("*.yaml"))]
        if not stages:
            raise StackError(f"no kwok stage files in {self.bin_dir / 'kwok-stages'}: rerun scripts/build-k8s.sh")
        return [
            str(self.bin_dir / "kwok"), f"--kubeconfig={self.kubeconfig}",
            *(f"--config={s}" for s in stages),
            "--manage-all-nodes=false", "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--node-lease-duration-seconds=40", "--cidr=10.244.0.0/16", "--node-ip=127.0.0.1",
        ]

    def _with_never_ready(self, stage: Path) -> Path:
        """kwok's pod-ready stage, except for pods with an image tagged ``*never-ready*``: those stay
        Pending, so a test can release an image that never becomes ready (rollback, Degraded)."""
        if stage.name != "pod-ready.yaml":
            return stage
        doc = yaml.safe_load(stage.read_text())
        doc["spec"]["selector"]["matchExpressions"].append(
            {"key": f'.spec.containers[] | select(.image | contains("{NEVER_READY}")) | .image',
             "operator": "DoesNotExist"})
        patched = self.state_dir / "kwok-stages" / stage.name
        patched.parent.mkdir(parents=True, exist_ok=True)
        patched.write_text(yaml.safe_dump(doc, sort_keys=False))
        return patched

    # -- probes and state --------------------------------------------------------------------------

    def _ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_crt))
        ctx.load_cert_chain(str(self.pki.admin_crt), str(self.pki.admin_key))
        return ctx

    def _https_ok(self, port: int, path: str) -> bool:
        return _http_ok(f"https://127.0.0.1:{port}{path}", self._ssl())

    def _api_ready(self) -> bool:
        try:
            return self.pki.complete() and self._https_ok(self.api_port, "/readyz")
        except OSError:
            return False

    def _all_running(self) -> bool:
        return all(self._daemon(name).running() for name in COMPONENTS)

    def _daemon(self, name: str) -> Daemon:
        return Daemon(name, run_dir=self.state_dir / "run")

    def _save(self) -> None:
        data = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}
        (self.state_dir / "kube.json").write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, state_dir: Path) -> KubeCluster | None:
        try:
            data = json.loads((state_dir / "kube.json").read_text())
            data.update(state_dir=state_dir, bin_dir=Path(data["bin_dir"]))
            return cls(**data)
        except (OSError, ValueError, TypeError, KeyError):
            return None


def _ports(previous: KubeCluster | None) -> dict[str, int]:
    """Reuse the recorded ports when they are all free (clients keep their kubeconfig); else new ones."""
    names = ("etcd_port", "etcd_peer_port", "api_port", "kcm_port", "scheduler_port")
    if previous is not None:
        recorded = {n: getattr(previous, n) for n in names}
        if not any(port_open(p) for p in recorded.values()):
            return recorded
    ports: dict[str, int] = {}
    while len(set(ports.values())) < len(names):
        ports = {n: free_port() for n in names}
    return ports


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    with urllib.request.urlopen(url, timeout=2, context=context) as resp:  # noqa: S310 (our URLs)
        return bool(resp.status == 200)


def _tail(log: Path, lines: int = 25) -> str:
    if not log.exists():
        return f"(no log at {log})"
    text = log.read_text(errors="replace").splitlines()[-lines:]
    return f"--- last lines of {log} ---\n" + "\n".join(text)
