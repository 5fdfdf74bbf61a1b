"""The whole local stack under one state directory: start, stop, describe.

``state.json`` records the ports chosen on first start, so ``up`` is idempotent and ``status``
can find everything again. Secrets for the stack (webhook secret, registry token, API token) are
generated once into ``<state>/secrets/`` and referenced from the generated ``shipline.yaml``.

The Git forge is Gitea (``devstack.gitea``): ``up`` starts it and the demo's repos live there. The
plain ``git http-backend`` server (``self.git``) is not started by ``up``; tests that need a bare
repo they can reach into (the build mirror, the chaos world's pre-receive hooks) start it.
"""

from __future__ import annotations

import json
import secrets
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from devstack.baseimage import BASE_REPOSITORY, build_base_image
from devstack.gitea import Gitea
from devstack.gitrepos import GitServer
from devstack.process import Daemon, free_port
from devstack.redis import RedisServer
from devstack.registry import Registry
from service.config import DEV_STATE_DIR

DEFAULT_STATE_DIR = DEV_STATE_DIR
SECRET_NAMES = ("webhook-secret", "registry-token", "api-token")


@dataclass
class Ports:
    redis: int = field(default_factory=free_port)
    registry: int = field(default_factory=free_port)
    git: int = field(default_factory=free_port)
    gitea: int = field(default_factory=free_port)
    receiver: int = field(default_factory=free_port)


class Stack:
    def __init__(self, state_dir: Path = DEFAULT_STATE_DIR) -> None:
        self.state_dir = state_dir.expanduser().resolve()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.ports = self._load_ports()
        self.redis = RedisServer(self.state_dir, self.ports.redis)
        self.git = GitServer(self.state_dir, self.ports.git)
        self.gitea = Gitea(self.state_dir, self.ports.gitea)
        self.registry = Registry(self.state_dir, self.ports.registry,
                                 notify_url=f"{self.receiver_url}/hooks/registry",
                                 notify_token=self.secret("registry-token"))

    # -- state -------------------------------------------------------------------------
    def _load_ports(self) -> Ports:
        state = self.state_dir / "state.json"
        known = json.loads(state.read_text())["ports"] if state.exists() else {}
        ports = Ports(**{k: v for k, v in known.items() if k in Ports.__dataclass_fields__})
        if asdict(ports) != known:  # first start, or a component added since: keep its port too
            state.write_text(json.dumps({"ports": asdict(ports)}, indent=2))
        return ports

    def secret_file(self, name: str) -> Path:
        path = self.state_dir / "secrets" / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            path.write_text(secrets.token_urlsafe(32))
            path.chmod(0o600)
        return path

    def secret(self, name: str) -> str:
        return self.secret_file(name).read_text().strip()

    @property
    def receiver_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.receiver}"

    @property
    def kube_dir(self) -> Path:
        return self.state_dir / "kube"

    @property
    def kubeconfig(self) -> Path:
        return self.kube_dir / "kubeconfig"

    @property
    def config_path(self) -> Path:
        return self.state_dir / "shipline.yaml"

    @property
    def base_image(self) -> str:
        return f"{self.registry.host}/{BASE_REPOSITORY}:latest"

    # -- lifecycle ---------------------------------------------------------------------
    def up(self, *, kube: bool = True, progress: Any = print) -> dict[str, Any]:
        for name, component in (("redis", self.redis), ("registry", self.registry), ("gitea", self.gitea)):
            progress(f"starting {name}")
            component.start()
        progress("building base image (busybox-static)")
        build_base_image(self.state_dir, self.registry.host)
        if kube:
            progress("starting Kubernetes control plane (first run builds the binaries: minutes)")
            cluster = self._kube_cluster(start=True)
            self._real_node().start_for_stack(cluster, registry_host=self.registry.host, progress=progress,
                                              images_state_dir=self.state_dir, probe_image=self.base_image,
                                              relay_ports=[self.ports.gitea, self.ports.git])
        self.write_config()
        return self.status()

    def down(self) -> None:
        for daemon in self.service_daemons():
            daemon.stop()
        cluster = self._kube_cluster(start=False)
        if cluster is not None:
            self._real_node().stop_for_stack(self.kube_dir)
            cluster.stop()
        for component in (self.gitea, self.git, self.registry, self.redis):
            component.stop()

    def _kube_cluster(self, *, start: bool) -> Any:
        from devstack.kube import KubeCluster

        if start:
            return KubeCluster.start(self.kube_dir)
        return KubeCluster.load(self.kube_dir)

    @staticmethod
    def _real_node() -> Any:
        from devstack import realnode  # the kubernetes client, only when the cluster is involved

        return realnode

    def service_daemons(self) -> list[Daemon]:
        run = self.state_dir / "run"
        return [Daemon("shipline-serve", run), Daemon("shipline-worker", run)]

    def start_services(self) -> None:
        """Shipline's own receiver and worker, as background daemons of the stack."""
        env = {"SHIPLINE_CONFIG": str(self.config_path), "PYTHONUNBUFFERED": "1"}
        if self.gitea.daemon.running():
            env.update(self.gitea.git_env())  # fetch and push (bumps) with Gitea's token
        exe = [sys.executable, "-m", "service.cli"]
        serve, worker = self.service_daemons()
        serve.start([*exe, "serve"], env=env)
        worker.start([*exe, "worker"], env=env)

    def wait_services(self) -> None:
        from devstack.process import port_open, wait_until

        serve, _ = self.service_daemons()
        wait_until(lambda: port_open(self.ports.receiver), timeout=30, what="shipline serve", log=serve.log_file)

    def status(self) -> dict[str, Any]:
        kube = self._kube_cluster(start=False)
        serve, worker = self.service_daemons()
        return {
            "state_dir": str(self.state_dir),
            "config": str(self.config_path),
            "redis": {"url": self.redis.url, "running": self.redis.daemon.running()},
            "registry": {"url": self.registry.url, "host": self.registry.host,
                         "base_image": self.base_image, "running": self.registry.daemon.running()},
            "gitea": {"url": self.gitea.url, "api": self.gitea.api_url, "running": self.gitea.daemon.running(),
                      "token": str(self.gitea.token_file)},
            "kubernetes": kube.status() if kube is not None else {"running": False},
            "real_node": self._real_node().status_for_stack(self.kube_dir),
            "kubeconfig": str(self.kubeconfig),
            "receiver": {"url": self.receiver_url, "running": serve.running(),
                         "dashboard": f"{self.receiver_url}/"},
            "worker": {"running": worker.running()},
            "logs": str(self.state_dir / "run"),
        }

    def write_config(self, extra: dict[str, Any] | None = None) -> Path:
        """A ``shipline.yaml`` for this stack: receivers for Gitea (its webhook secret) and the registry."""
        config: dict[str, Any] = {
            "state_dir": str(self.state_dir / "shipline"),
            "server": {"host": "127.0.0.1", "port": self.ports.receiver,
                       "api_token": {"file": str(self.secret_file("api-token"))}},
            "redis": {"url": self.redis.url},
            "receivers": [
                {"source": "gitea", "secret": {"file": str(self.secret_file("webhook-secret"))}},
                {"source": "github", "secret": {"file": str(self.secret_file("webhook-secret"))}},
                {"source": "registry", "secret": {"file": str(self.secret_file("registry-token"))}},
            ],
            "registries": [{"host": self.registry.host, "insecure": True}],
            **(extra or {}),
        }
        self.config_path.write_text(json.dumps(config, indent=2) + "\n")
        return self.config_path
