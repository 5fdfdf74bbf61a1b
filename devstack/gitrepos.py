"""Run the plain HTTP git server and create bare repos on it (optionally notifying a webhook on push).

Not the stack's forge (that is Gitea, ``devstack.gitea``): kept for what reaches into bare repos
on disk — the build-mirror, pipeline and stack-part tests, the chaos world (its pre-receive hook
holds and refuses pushes) and the bump, build and fleet benchmarks. ``Stack.up`` does not start it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from devstack.process import Daemon, require_binary, wait_until

HOOK = """#!/bin/sh
cd "$(dirname "$0")/.." && exec {python} -m devstack.gitnotify
"""


@dataclass
class GitServer:
    state_dir: Path
    port: int

    @property
    def root(self) -> Path:
        return self.state_dir / "git"

    @property
    def daemon(self) -> Daemon:
        return Daemon("gitserver", self.state_dir / "run")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def repo_url(self, name: str) -> str:
        return f"{self.url}/{name}.git"

    def start(self) -> None:
        require_binary("git", "install it with: apt-get install git")
        self.root.mkdir(parents=True, exist_ok=True)
        self.daemon.start([sys.executable, "-m", "devstack.gitserver",
                           "--root", str(self.root), "--port", str(self.port)],
                          cwd=Path(__file__).resolve().parents[1])
        wait_until(self._ready, timeout=15, what="git server", log=self.daemon.log_file)

    def _ready(self) -> bool:
        return httpx.get(self.url + "/", timeout=1).status_code < 500

    def stop(self) -> None:
        self.daemon.stop()

    def create_repo(self, name: str, *, notify_url: str | None = None,
                    secret_file: Path | None = None, branch: str = "main") -> str:
        """A bare repo ``<name>.git`` (idempotent); with ``notify_url``, pushes POST a webhook."""
        path = self.root / f"{name}.git"
        if not path.exists():
            subprocess.run(["git", "init", "-q", "--bare", "-b", branch, str(path)], check=True)
            subprocess.run(["git", "-C", str(path), "config", "http.receivepack", "true"], check=True)
        if notify_url and secret_file:
            settings = {"url": notify_url, "secret_file": str(secret_file), "name": name,
                        "clone_url": self.repo_url(name)}
            (path / "shipline-hook.json").write_text(json.dumps(settings))
            hook = path / "hooks" / "post-receive"
            pkg_root = Path(__file__).resolve().parents[1]
            hook.write_text(HOOK.format(python=f"env PYTHONPATH={pkg_root} {sys.executable}"))
            hook.chmod(0o755)
        return self.repo_url(name)
