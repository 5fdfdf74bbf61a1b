"""Shopify's toxiproxy: a TCP proxy whose network faults are switched on and off over its HTTP API.

The chaos scenarios put one proxy between Shipline's processes and each server they talk to
(Redis, the kube-apiserver, the registry, the git server) and then add *toxics*: ``latency``,
``timeout`` (data black-holed, the connection left open: a partition or a half-open
connection), ``reset_peer`` (TCP RST), ``bandwidth``. The binary is built from its Go module by
``scripts/build-toxiproxy.sh`` (cached in ``~/.cache/shipline/toxiproxy``), like the Kubernetes
binaries; a missing Go fails with the script's hint.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from devstack.process import Daemon, StackError, cached_output, wait_until

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-toxiproxy.sh"
BUILD_TIMEOUT = 900
HINT = "run scripts/build-toxiproxy.sh (needs Go >= 1.26; builds into ~/.cache/shipline/toxiproxy)"
API_TIMEOUT = 5.0


def find_binary() -> Path:
    """``toxiproxy-server`` from the build script's cache (a no-op once built)."""
    return cached_output(BUILD_SCRIPT, HINT, expect=("toxiproxy-server",), timeout=BUILD_TIMEOUT) / "toxiproxy-server"


@dataclass(frozen=True)
class Proxy:
    """One proxy: clients connect to ``port``; toxics apply to every connection, open or new."""

    api: str
    name: str
    port: int
    upstream: str

    def add_toxic(self, kind: str, *, stream: str = "downstream", toxicity: float = 1.0,
                  name: str | None = None, **attributes: Any) -> str:
        """Add a toxic (``latency``, ``timeout``, ``reset_peer``, ``bandwidth``, ...); its name."""
        toxic = name or f"{kind}_{stream}"
        body = {"name": toxic, "type": kind, "stream": stream, "toxicity": toxicity, "attributes": attributes}
        _call("POST", f"{self.api}/proxies/{self.name}/toxics", body)
        return toxic

    def remove_toxic(self, name: str) -> None:
        _call("DELETE", f"{self.api}/proxies/{self.name}/toxics/{name}")

    def toxics(self) -> list[dict[str, Any]]:
        return list(_call("GET", f"{self.api}/proxies/{self.name}/toxics"))

    @contextlib.contextmanager
    def toxic(self, kind: str, **options: Any) -> Iterator[str]:
        """The toxic for the duration of the ``with`` block."""
        name = self.add_toxic(kind, **options)
        try:
            yield name
        finally:
            self.remove_toxic(name)

    def set_enabled(self, enabled: bool) -> None:
        """Disabled: every open connection is closed and new ones are refused."""
        _call("POST", f"{self.api}/proxies/{self.name}", {"enabled": enabled})

    def clear(self) -> None:
        """No toxics, enabled."""
        for toxic in self.toxics():
            self.remove_toxic(toxic["name"])
        self.set_enabled(True)


@dataclass
class Toxiproxy:
    """The toxiproxy server: its API on ``127.0.0.1:<port>``, a ``Daemon`` under ``state_dir/run``."""

    state_dir: Path
    port: int

    @property
    def daemon(self) -> Daemon:
        return Daemon("toxiproxy", self.state_dir / "run")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = find_binary()
        self.daemon.start([str(binary), "-host", "127.0.0.1", "-port", str(self.port)])
        wait_until(self._ready, timeout=15, what="toxiproxy", log=self.daemon.log_file)

    def stop(self) -> None:
        self.daemon.stop()

    def _ready(self) -> bool:
        return httpx.get(f"{self.url}/version", timeout=1).status_code == 200

    def proxy(self, name: str, upstream_port: int) -> Proxy:
        """A proxy to ``127.0.0.1:<upstream_port>`` on a port the kernel picks (replaced if it exists)."""
        with contextlib.suppress(StackError):
            _call("DELETE", f"{self.url}/proxies/{name}")
        upstream = f"127.0.0.1:{upstream_port}"
        created = _call("POST", f"{self.url}/proxies",
                        {"name": name, "listen": "127.0.0.1:0", "upstream": upstream, "enabled": True})
        return Proxy(self.url, name, int(created["listen"].rsplit(":", 1)[1]), upstream)

    def reset(self) -> None:
        """Every proxy enabled, every toxic removed."""
        _call("POST", f"{self.url}/reset")


def _call(method: str, url: str, body: dict[str, Any] | None = None) -> Any:
    try:
        answer = httpx.request(method, url, json=body, timeout=API_TIMEOUT)
    except httpx.HTTPError as exc:
        raise StackError(f"toxiproxy API {method} {url}: {exc}") from None
    if answer.status_code >= 400:
        raise StackError(f"toxiproxy API {method} {url}: {answer.status_code} {answer.text[:300]}")
    return answer.json() if answer.content else None
