"""Gitea in the local stack: built from its Go module, started headless with our settings, an
admin and a token for Shipline, repos and push webhooks made through its API."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import time
import urllib.parse
import uuid
from pathlib import Path

import httpx
import pytest

from devstack import gitea as gitea_module
from devstack.process import StackError, free_port, wait_until
from devstack.stack import Stack

REPO_ROOT = Path(__file__).resolve().parents[2]
PINS = REPO_ROOT / "scripts" / "gotools" / "gitea"


def test_gitea_is_built_from_its_module_with_sqlite_into_a_cache_keyed_by_its_pins() -> None:
    install = gitea_module.find_install()
    version = subprocess.run([str(install / "gitea"), "--version"], capture_output=True, text=True,
                             check=True).stdout
    assert "gitea version 1.26.0" in version and "sqlite, sqlite_unlock_notify" in version
    pins = hashlib.sha256((PINS / "go.mod").read_bytes() + (PINS / "go.sum").read_bytes()).hexdigest()[:12]
    assert install.name == f"v1.26.0-{pins}"
    assert (install / "options" / "locale").is_dir() and (install / "templates").is_dir()


def test_without_go_the_error_carries_the_build_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPLINE_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setenv("SHIPLINE_GO", "/nonexistent/go")

    with pytest.raises(StackError, match=r"scripts/build-gitea.sh(.|\n)*Go is required to build Gitea \(Go >= 1.26.2"):
        gitea_module.find_install()


def test_gitea_runs_headless_on_loopback_with_an_admin_and_private_secrets(stack: Stack) -> None:
    gitea = stack.gitea
    assert httpx.get(f"{gitea.api_url}/version").json() == {"version": "1.26.0"}
    me = httpx.get(f"{gitea.api_url}/user", headers=gitea.auth).json()
    assert (me["login"], me["is_admin"]) == ("dev", True)
    ini = gitea.app_ini.read_text()
    for line in ("INSTALL_LOCK = true", "DB_TYPE = sqlite3", "HTTP_ADDR = 127.0.0.1", "OFFLINE_MODE = true",
                 "ALLOWED_HOST_LIST = loopback", "DISABLE_REGISTRATION = true"):
        assert line in ini
    assert "[mailer]\nENABLED = false" in ini
    for secret in (gitea.token_file, gitea.credentials_file, gitea.password_file, gitea.app_ini):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
    # git's credential store rewrites the file after each use, spelling the port's colon %3a
    stored = urllib.parse.unquote(gitea.credentials_file.read_text())
    assert stored == f"http://dev:{gitea.token}@127.0.0.1:{gitea.port}\n"
    password = gitea.password_file.read_text()
    assert httpx.get(f"{gitea.api_url}/user", auth=("dev", password)).json()["login"] == "dev"  # the web UI login


def test_a_second_start_keeps_the_token_and_a_lost_token_is_replaced(stack: Stack) -> None:
    gitea = stack.gitea
    token = gitea.token
    gitea.start()
    assert gitea.token == token
    gitea.token_file.unlink()
    gitea.start()
    assert gitea.token != token
    assert httpx.get(f"{gitea.api_url}/user", headers=gitea.auth).status_code == 200


def test_repos_and_webhooks_are_idempotent(stack: Stack) -> None:
    gitea, name = stack.gitea, f"idem-{uuid.uuid4().hex[:8]}"
    repo = gitea.create_repo(name)
    assert gitea.create_repo(name) == repo
    assert (repo.full_name, repo.clone_url) == (f"dev/{name}", f"{gitea.url}/dev/{name}.git")
    first = gitea.add_push_webhook(repo, "http://127.0.0.1:9/hooks/gitea", "one")
    assert gitea.add_push_webhook(repo, "http://127.0.0.1:9/hooks/gitea", "two") == first
    (hook,) = gitea.api("GET", f"/repos/{repo.full_name}/hooks")
    assert (hook["type"], hook["events"], hook["config"]["content_type"]) == ("gitea", ["push"], "json")


def test_a_refused_delivery_is_recorded_by_gitea_and_not_retried(stack: Stack, tmp_path: Path) -> None:
    """Gitea 1.26 sends each delivery once: a refused one stays in its history as failed."""
    gitea = stack.gitea
    repo = gitea.create_repo(f"refused-{uuid.uuid4().hex[:8]}")
    gitea.add_push_webhook(repo, f"http://127.0.0.1:{free_port()}/hooks/gitea", "s")
    work = tmp_path / "work"
    env = {**os.environ, **gitea.git_env()}
    git = ["git", "-c", "user.name=Dev", "-c", "user.email=dev@example.com", "-C", str(work)]
    subprocess.run(["git", "clone", "-q", repo.clone_url, str(work)], check=True, capture_output=True, env=env)
    (work / "a.txt").write_text("a\n")
    for args in (["add", "a.txt"], ["commit", "-qm", "a"], ["push", "-q", "origin", "HEAD:main"]):
        subprocess.run([*git, *args], check=True, capture_output=True, env=env)
    wait_until(lambda: any(d.delivered for d in gitea.deliveries(repo)), timeout=30, what="the delivery attempted")
    time.sleep(2)
    (delivery,) = gitea.deliveries(repo)
    assert (delivery.event, delivery.delivered, delivery.succeeded, delivery.status) == ("push", True, False, 0)
    assert "connection refused" in delivery.response_body


def test_a_state_dir_from_before_gitea_gets_a_port_for_it_and_keeps_the_others(tmp_path: Path) -> None:
    old = {"redis": free_port(), "registry": free_port(), "git": free_port(), "receiver": free_port()}
    (tmp_path / "state.json").write_text(json.dumps({"ports": old}))
    ports = Stack(tmp_path).ports
    assert {k: getattr(ports, k) for k in old} == old and ports.gitea not in old.values()
    assert json.loads((tmp_path / "state.json").read_text())["ports"]["gitea"] == ports.gitea
    assert Stack(tmp_path).ports.gitea == ports.gitea
