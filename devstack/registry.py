"""A CNCF Distribution registry (Debian ``docker-registry``) that notifies Shipline's receiver."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import httpx

from devstack.process import Daemon, require_binary, wait_until

INSTALL_HINT = "install it with: apt-get install docker-registry"


@dataclass
class Registry:
    state_dir: Path
    port: int
    notify_url: str | None = None
    """Receiver endpoint for notifications, e.g. http://127.0.0.1:8080/hooks/registry."""
    notify_token: str | None = None

    @property
    def daemon(self) -> Daemon:
        return Daemon("registry", self.state_dir / "run")

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def config(self) -> dict:
        cfg: dict = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text"},
            "storage": {
                "filesystem": {"rootdirectory": str(self.state_dir / "registry" / "data")},
                "delete": {"enabled": True},
                "cache": {"blobdescriptor": "inmemory"},
            },
            "http": {"addr": self.host, "secret": "shipline-dev-local-only"},
        }
        if self.notify_url:
            headers = {"Authorization": [f"Bearer {self.notify_token}"]} if self.notify_token else {}
            cfg["notifications"] = {
                "endpoints": [{
                    "name": "shipline", "url": self.notify_url, "headers": headers,
                    "timeout": "2s", "threshold": 5, "backoff": "1s",
                    "ignoredmediatypes": ["application/octet-stream"],
                }]
            }
        return cfg

    def start(self) -> None:
        binary = require_binary("docker-registry", INSTALL_HINT)
        conf = self.state_dir / "registry" / "config.yml"
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(json.dumps(self.config(), indent=2))  # JSON is YAML
        self.daemon.start([str(binary), "serve", str(conf)])
        wait_until(self._ready, timeout=15, what="registry", log=self.daemon.log_file)

    def _ready(self) -> bool:
        return httpx.get(f"{self.url}/v2/", timeout=1).status_code == 200

    def stop(self) -> None:
        self.daemon.stop()
