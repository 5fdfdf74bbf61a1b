"""Commit statuses on the stack's real Gitea (provider ``gitea``): what the build posts is what
Gitea shows afterwards."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from devstack.stack import Stack
from handlers.errors import ConfigError
from handlers.settings import CommitStatusConfig
from service import notify
from service.config import parse_config

pytestmark = pytest.mark.stack
GIT = ["git", "-c", "user.name=Dev", "-c", "user.email=dev@example.com"]


@pytest.fixture
def pushed(stack: Stack, tmp_path: Path) -> tuple[str, str]:
    """A fresh Gitea repo with one commit on main: (owner/name, sha)."""
    repo = stack.gitea.create_repo(f"status-{uuid.uuid4().hex[:8]}")
    env = {**os.environ, **stack.gitea.git_env()}
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", repo.clone_url, str(work)], check=True, capture_output=True, env=env)
    (work / "README.md").write_text("status\n")
    for args in (["add", "README.md"], ["commit", "-qm", "one"], ["push", "-q", "origin", "HEAD:main"]):
        subprocess.run([*GIT, "-C", str(work), *args], check=True, capture_output=True, env=env)
    sha = subprocess.run(["git", "-C", str(work), "rev-parse", "HEAD"], check=True, capture_output=True,
                         text=True).stdout.strip()
    return repo.full_name, sha


def status_config(stack: Stack, repository: str, token_file: Path | None = None) -> CommitStatusConfig:
    return CommitStatusConfig(provider="gitea", api_url=stack.gitea.api_url, repository=repository,
                              token={"file": token_file or stack.gitea.token_file})


def test_gitea_status_is_visible_on_the_commit_with_state_context_description_and_link(stack, pushed) -> None:
    repository, sha = pushed
    cfg = status_config(stack, repository)
    assert notify.post_status(cfg, sha, "pending", "building main", "http://127.0.0.1:1/#event=e1")
    assert notify.post_status(cfg, sha, "success", "2 image(s) pushed", "http://127.0.0.1:1/#event=e1")
    shown = sorted(stack.gitea.api("GET", f"/repos/{repository}/statuses/{sha}"), key=lambda s: s["id"])
    assert [(s["status"], s["context"], s["description"]) for s in shown] == [
        ("pending", "shipline/build", "building main"), ("success", "shipline/build", "2 image(s) pushed")]
    assert shown[-1]["target_url"] == "http://127.0.0.1:1/#event=e1"
    combined = stack.gitea.api("GET", f"/repos/{repository}/commits/{sha}/status")
    assert combined["state"] == "success"


def test_a_superseded_build_is_an_error_status_on_gitea(stack, pushed) -> None:
    repository, sha = pushed
    assert notify.post_status(status_config(stack, repository), sha, "error", "superseded by a newer push")
    (shown,) = stack.gitea.api("GET", f"/repos/{repository}/statuses/{sha}")
    assert shown["status"] == "error"


def test_a_wrong_token_posts_nothing_and_is_logged_without_the_token(stack, pushed, tmp_path, caplog) -> None:
    repository, sha = pushed
    wrong = tmp_path / "wrong"
    wrong.write_text("0" * 40)
    assert notify.post_status(status_config(stack, repository, wrong), sha, "success", "ok") is False
    assert stack.gitea.api("GET", f"/repos/{repository}/statuses/{sha}") == []
    assert "refused: HTTP 401" in caplog.text and "0" * 40 not in caplog.text


def test_gitea_needs_an_api_url() -> None:
    with pytest.raises(ConfigError, match="api_url"):
        parse_config({"repos": [{"name": "shop", "url": "file:///shop", "status": {
            "provider": "gitea", "repository": "dev/shop", "token": {"env": "T"}}}]})
