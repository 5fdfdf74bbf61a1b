"""Gitea, headless: the stack's Git forge (API, Git over HTTP, push webhooks, commit statuses, PRs).

The binary is built from its Go module by ``scripts/build-gitea.sh`` (cached in
``~/.cache/shipline/gitea``, beside its templates and locales; no web assets, so pages render
without CSS). Everything Gitea keeps lives under ``<state>/gitea``: its ``app.ini`` (rewritten
from this module on every start: SQLite, ``INSTALL_LOCK``, HTTP on 127.0.0.1 only, offline, no
mailer, no cron, webhooks allowed to loopback), the database and the repositories.

On first start an admin (``dev``, random password in ``<secrets>/gitea-password``) is made with
``gitea admin user create`` and an access token for Shipline with
``gitea admin user generate-access-token``; the token goes to
``<secrets>/gitea-token`` and, for git over HTTP, to ``<secrets>/git-credentials`` (git's
``store`` format), which ``git_env()`` points git's credential helper at.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import secrets
import shlex
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from devstack.process import Daemon, StackError, cached_output, wait_until

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-gitea.sh"
BUILD_TIMEOUT = 3600
"""A cold build takes about 7.5 minutes on 2 cores; a warm cache returns at once."""
HINT = "run scripts/build-gitea.sh (needs Go >= 1.26.2 and gcc; builds into ~/.cache/shipline/gitea)"
ADMIN = "dev"
START_TIMEOUT = 90
"""A fresh database is migrated on first start: about 2 s here, much more on a loaded machine."""
CLI_TIMEOUT = 60
API_TIMEOUT = httpx.Timeout(10.0, connect=2.0)
DELIVER_TIMEOUT_SECONDS = 5
_TOKEN_RE = re.compile(r"^[0-9a-f]{40}$")
_PASSWORD_RE = re.compile(r"generated random password is '([^'\n]+)'")


def find_install() -> Path:
    """The directory holding ``gitea`` and its ``templates``/``options`` (built once, then cached)."""
    return cached_output(BUILD_SCRIPT, HINT, expect=("gitea", "templates", "options/locale"), timeout=BUILD_TIMEOUT)


@dataclass(frozen=True)
class GiteaRepo:
    owner: str
    name: str
    clone_url: str

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass
class Gitea:
    state_dir: Path
    port: int
    secrets_dir: Path | None = None
    """Where the token and git credentials are written; default ``<state>/secrets``."""
    admin: str = ADMIN

    @property
    def daemon(self) -> Daemon:
        return Daemon("gitea", self.state_dir / "run")

    @property
    def home(self) -> Path:
        return self.state_dir / "gitea"

    @property
    def app_ini(self) -> Path:
        return self.home / "app.ini"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/v1"

    @property
    def token_file(self) -> Path:
        return self.secrets_root / "gitea-token"

    @property
    def password_file(self) -> Path:
        return self.secrets_root / "gitea-password"

    @property
    def credentials_file(self) -> Path:
        return self.secrets_root / "git-credentials"

    @property
    def token(self) -> str:
        return self.token_file.read_text().strip()

    @property
    def secrets_root(self) -> Path:
        return self.secrets_dir or self.state_dir / "secrets"

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        install = find_install()
        self.home.mkdir(parents=True, exist_ok=True)
        self.app_ini.write_text(app_ini(self, install))
        self.app_ini.chmod(0o600)
        self.daemon.start([str(install / "gitea"), "web", "--config", str(self.app_ini)], cwd=self.home)
        wait_until(self._ready, timeout=START_TIMEOUT, what="gitea", log=self.daemon.log_file)
        self._ensure_token(install / "gitea")

    def stop(self) -> None:
        self.daemon.stop()

    def _ready(self) -> bool:
        return httpx.get(f"{self.api_url}/version", timeout=1).status_code == 200

    def _ensure_token(self, binary: Path) -> None:
        """The admin and Shipline's token, once; a token Gitea no longer knows is replaced."""
        if self.token_file.exists() and self._token_works():
            self._write_credentials(self.token)  # the port may have changed with a new state.json
            return
        cli = [str(binary), "admin", "user"]
        made = self._cli([*cli, "create", "--config", str(self.app_ini), "--username", self.admin,
                          "--email", f"{self.admin}@shipline.local", "--admin", "--random-password",
                          "--must-change-password=false"], check=False)
        if made.returncode != 0 and "already exists" not in made.stdout + made.stderr:
            raise StackError(f"gitea admin user create failed: {made.stderr.strip()[-500:]}")
        password = _PASSWORD_RE.search(made.stdout)
        if password:  # generated by Gitea, never on a command line; for logging in to the web UI
            _write_secret(self.password_file, password[1])
        name = f"shipline-{secrets.token_hex(4)}"
        out = self._cli([*cli, "generate-access-token", "--config", str(self.app_ini), "--username",
                         self.admin, "--token-name", name, "--scopes", "all", "--raw"]).stdout
        token = next((line for line in out.split() if _TOKEN_RE.match(line)), None)
        if token is None:
            raise StackError("gitea admin user generate-access-token printed no token")
        _write_secret(self.token_file, token)
        self._write_credentials(token)

    def _write_credentials(self, token: str) -> None:
        _write_secret(self.credentials_file, f"http://{self.admin}:{token}@127.0.0.1:{self.port}\n")

    def _cli(self, argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=CLI_TIMEOUT, cwd=self.home,
                              check=False)
        if check and done.returncode != 0:
            raise StackError(f"{' '.join(argv[1:4])} failed: {done.stderr.strip()[-500:]}")
        return done

    def _token_works(self) -> bool:
        return httpx.get(f"{self.api_url}/user", headers=self.auth, timeout=API_TIMEOUT).status_code == 200

    # -- what the stack uses -------------------------------------------------------------
    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def git_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment entries that make git answer this Gitea's 401s from ``git-credentials``
        (``GIT_CONFIG_*``, appended after any the environment already has)."""
        env = os.environ if base is None else base
        index = int(env.get("GIT_CONFIG_COUNT") or 0)
        helper = f"store --file={shlex.quote(str(self.credentials_file))}"
        return {"GIT_CONFIG_COUNT": str(index + 1), f"GIT_CONFIG_KEY_{index}": f"credential.{self.url}.helper",
                f"GIT_CONFIG_VALUE_{index}": helper}

    def api(self, method: str, path: str, *, json: Any = None, ok: tuple[int, ...] = (200, 201, 204)) -> Any:
        answer = httpx.request(method, f"{self.api_url}{path}", json=json, headers=self.auth, timeout=API_TIMEOUT)
        if answer.status_code not in ok:
            raise StackError(f"gitea {method} {path}: HTTP {answer.status_code} {answer.text[:300]}")
        return answer.json() if answer.content else None

    def create_repo(self, name: str, *, default_branch: str = "main") -> GiteaRepo:
        """An empty public repo ``<admin>/<name>`` (idempotent)."""
        found = httpx.get(f"{self.api_url}/repos/{self.admin}/{name}", headers=self.auth, timeout=API_TIMEOUT)
        data = found.json() if found.status_code == 200 else self.api(
            "POST", "/user/repos", json={"name": name, "default_branch": default_branch, "private": False})
        return GiteaRepo(data["owner"]["login"], data["name"], data["clone_url"])

    def deliveries(self, repo: GiteaRepo) -> list[Delivery]:
        """Gitea's own record of the deliveries of ``repo``'s webhooks, oldest first: its
        ``hook_task`` table, read-only (Gitea 1.26 has no API for them; its web UI shows the same)."""
        hooks = [int(h["id"]) for h in self.api("GET", f"/repos/{repo.full_name}/hooks")]
        if not hooks:
            return []
        db = sqlite3.connect(f"file:{self.home / 'data' / 'gitea.db'}?mode=ro", uri=True, timeout=10)
        try:
            rows = db.execute(f"SELECT uuid, event_type, is_delivered, is_succeed, request_content, "  # noqa: S608
                              f"response_content FROM hook_task WHERE hook_id IN ({','.join('?' * len(hooks))}) "
                              "ORDER BY id", hooks).fetchall()
        finally:
            db.close()
        return [_delivery(*row) for row in rows]

    def add_push_webhook(self, repo: GiteaRepo, url: str, secret: str) -> int:
        """A ``gitea``-type push webhook (JSON, signed with ``secret``) to ``url``; an existing
        hook to the same URL is updated instead of doubled. Returns its id."""
        hooks = self.api("GET", f"/repos/{repo.full_name}/hooks")
        config = {"url": url, "content_type": "json", "secret": secret}
        body = {"config": config, "events": ["push"], "active": True, "branch_filter": "*"}
        for hook in hooks:
            if hook["config"].get("url") == url:
                self.api("PATCH", f"/repos/{repo.full_name}/hooks/{hook['id']}", json=body)
                return int(hook["id"])
        return int(self.api("POST", f"/repos/{repo.full_name}/hooks", json={"type": "gitea", **body})["id"])


@dataclass(frozen=True)
class Delivery:
    """One webhook delivery as Gitea recorded it."""

    id: str
    """The ``X-Gitea-Delivery`` header Gitea sent (its hook task's UUID)."""
    event: str
    delivered: bool
    succeeded: bool
    status: int
    """The receiver's HTTP answer; 0 when the connection failed."""
    request_headers: dict[str, str]
    response_body: str


def app_ini(gitea: Gitea, install: Path) -> str:
    home = gitea.home
    root: dict[str, str] = {"APP_NAME": "Shipline dev forge", "RUN_MODE": "prod",
                            "RUN_USER": os.environ.get("USER") or getpass.getuser(), "WORK_PATH": str(home)}
    if os.geteuid() == 0:
        root["I_AM_BEING_UNSAFE_RUNNING_AS_ROOT"] = "true"  # CI and fresh Debian boxes run as root
    sections: dict[str, dict[str, str]] = {
        "server": {"PROTOCOL": "http", "HTTP_ADDR": "127.0.0.1", "HTTP_PORT": str(gitea.port),
                   "DOMAIN": "127.0.0.1", "ROOT_URL": f"{gitea.url}/", "LOCAL_ROOT_URL": f"{gitea.url}/",
                   "DISABLE_SSH": "true", "START_SSH_SERVER": "false", "OFFLINE_MODE": "true",
                   "LFS_START_SERVER": "false", "STATIC_ROOT_PATH": str(install),
                   "APP_DATA_PATH": str(home / "data")},
        "database": {"DB_TYPE": "sqlite3", "PATH": str(home / "data" / "gitea.db"), "SQLITE_JOURNAL_MODE": "WAL"},
        "repository": {"ROOT": str(home / "repositories"), "DEFAULT_BRANCH": "main"},
        "security": {"INSTALL_LOCK": "true", "SECRET_KEY": _secret(gitea, "gitea-secret-key"),
                     "INTERNAL_TOKEN": _secret(gitea, "gitea-internal-token")},
        # Gitea writes a JWT secret into app.ini when it finds none, even with OAuth2 off.
        "oauth2": {"ENABLED": "false", "JWT_SECRET": _secret(gitea, "gitea-jwt-secret")},
        "service": {"DISABLE_REGISTRATION": "true", "REQUIRE_SIGNIN_VIEW": "false"},
        "mailer": {"ENABLED": "false"},
        "webhook": {"ALLOWED_HOST_LIST": "loopback", "DELIVER_TIMEOUT": str(DELIVER_TIMEOUT_SECONDS)},
        "indexer": {"ISSUE_INDEXER_TYPE": "db"},
        "actions": {"ENABLED": "false"},
        "packages": {"ENABLED": "false"},
        "cron": {"ENABLED": "false"},
        "cron.update_checker": {"ENABLED": "false"},  # it would call out to the internet
        "log": {"MODE": "console", "LEVEL": "Info", "ROOT_PATH": str(home / "log")},
    }
    lines = [f"{k} = {v}" for k, v in root.items()]
    for name, keys in sections.items():
        lines += ["", f"[{name}]", *(f"{k} = {v}" for k, v in keys.items())]
    return "\n".join(lines) + "\n"


def _delivery(uuid: str, event: str, delivered: int, succeeded: int, request: str | None,
              response: str | None) -> Delivery:
    sent = json.loads(request) if request else {}
    answer = json.loads(response) if response else {}
    return Delivery(uuid, event, bool(delivered), bool(succeeded), int(answer.get("status") or 0),
                    dict(sent.get("headers") or {}), str(answer.get("body") or ""))


def _secret(gitea: Gitea, name: str) -> str:
    path = gitea.secrets_root / name
    if not path.exists():
        _write_secret(path, secrets.token_urlsafe(32))  # also the base64url-32-bytes JWT form
    return path.read_text().strip()


def _write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.touch(mode=0o600)
    path.write_text(value)
