"""Redis with AOF persistence (fsync on every write), so an acknowledged enqueue survives a restart."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from devstack.process import Daemon, port_open, require_binary, wait_until

INSTALL_HINT = "install it with: apt-get install redis-server"


@dataclass
class RedisServer:
    state_dir: Path
    port: int

    @property
    def daemon(self) -> Daemon:
        return Daemon("redis", self.state_dir / "run")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = require_binary("redis-server", INSTALL_HINT)
        data = self.state_dir / "redis"
        data.mkdir(parents=True, exist_ok=True)
        self.daemon.start([
            str(binary), "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(data),
            "--appendonly", "yes", "--appendfsync", "always", "--save", "",
            "--protected-mode", "yes", "--daemonize", "no",
        ])
        wait_until(lambda: port_open(self.port), timeout=15, what="redis", log=self.daemon.log_file)

    def stop(self) -> None:
        self.daemon.stop()
