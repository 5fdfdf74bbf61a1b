"""The Gitea client (``service.forges.gitea``) against the stack's real Gitea: a pull request from
a branch is opened, found, edited and merged, and the merge commit lands on the base branch."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.gitea import Gitea, GiteaRepo
from devstack.process import free_port, wait_until
from devstack.stack import Stack
from service.forges.gitea import ForgeRefused, ForgeUnavailable, GiteaClient, PullRequest

pytestmark = pytest.mark.stack
GIT = ["git", "-c", "user.name=Dev", "-c", "user.email=dev@example.com"]


class Work:
    """A clone of a fresh Gitea repo that pushes with the stack's credentials."""

    def __init__(self, gitea: Gitea, repo: GiteaRepo, path: Path) -> None:
        self.env = {**os.environ, **gitea.git_env()}
        self.path = path
        subprocess.run(["git", "clone", "-q", repo.clone_url, str(path)], check=True, capture_output=True,
                       env=self.env)

    def __call__(self, *args: str) -> str:
        return subprocess.run([*GIT, "-C", str(self.path), *args], check=True, capture_output=True, text=True,
                              env=self.env).stdout.strip()

    def commit(self, name: str, text: str) -> str:
        (self.path / name).write_text(text)
        self("add", name)
        self("commit", "-qm", f"{name}: {text.strip()}")
        return self("rev-parse", "HEAD")


@pytest.fixture
def repo(stack: Stack, tmp_path: Path) -> tuple[GiteaRepo, Work]:
    made = stack.gitea.create_repo(f"pr-{uuid.uuid4().hex[:8]}")
    work = Work(stack.gitea, made, tmp_path / "work")
    work.commit("README.md", "base\n")
    work("push", "-q", "origin", "HEAD:main")
    return made, work


@pytest.fixture
def forge(stack: Stack) -> Iterator[GiteaClient]:
    with GiteaClient(stack.gitea.api_url, stack.gitea.token) as client:
        yield client


def open_review_branch(repo: tuple[GiteaRepo, Work], forge: GiteaClient, branch: str = "shipline/bump") -> PullRequest:
    made, work = repo
    work("checkout", "-qb", branch)
    work.commit("config.yaml", "version: 1.2.3\n")
    work("push", "-q", "origin", f"HEAD:{branch}")
    opened: list[PullRequest] = []

    def created() -> bool:  # the first try may come before Gitea has registered the pushed branch
        try:
            opened.append(forge.create_pull(made.full_name, head=branch, base="main", title="bump: 1.2.3",
                                            body="first"))
        except ForgeUnavailable as exc:
            assert exc.status == 404 and "not known to Gitea yet" in str(exc), exc
            return False
        return True

    wait_until(created, timeout=30, what="pull request opened")
    return opened[0]


def merge_when_checked(forge: GiteaClient, repo: str, pr: PullRequest) -> None:
    """Gitea checks mergeability in the background; until then a merge is 'try again later'."""

    def merged() -> bool:
        try:
            forge.merge_pull(repo, pr.number, head_sha=pr.head_sha, message="merged by the test")
        except ForgeUnavailable as exc:
            assert exc.status == 405, exc
            return False
        return True

    wait_until(merged, timeout=30, what=f"pull request #{pr.number} merged")


def test_a_pull_request_is_opened_found_edited_merged_and_lands_on_the_base_branch(repo, forge, stack) -> None:
    made, work = repo
    pr = open_review_branch(repo, forge)
    assert (pr.state, pr.head, pr.base, pr.title, pr.body, pr.merged) == (
        "open", "shipline/bump", "main", "bump: 1.2.3", "first", False)
    assert pr.head_sha == work("rev-parse", "HEAD")
    assert forge.find_open_pull(made.full_name, head="shipline/bump", base="main") == pr
    assert forge.find_open_pull(made.full_name, head="other", base="main") is None

    edited = forge.update_pull(made.full_name, pr.number, title="bump: 1.2.4", body="second")
    assert (edited.title, edited.body, edited.number) == ("bump: 1.2.4", "second", pr.number)
    assert forge.get_pull(made.full_name, pr.number).title == "bump: 1.2.4"

    merge_when_checked(forge, made.full_name, edited)
    done = forge.get_pull(made.full_name, pr.number)
    assert (done.merged, done.state) == (True, "closed") and done.merge_commit_sha
    branch = stack.gitea.api("GET", f"/repos/{made.full_name}/branches/main")
    assert branch["commit"]["id"] == done.merge_commit_sha
    work("fetch", "-q", "origin", "main")
    parents = work("rev-list", "--parents", "-n", "1", "origin/main").split()
    assert parents == [done.merge_commit_sha, work("rev-parse", "main"), pr.head_sha]
    assert "merged by the test" in work("log", "-1", "--format=%B", "origin/main")
    assert [p.number for p in forge.list_pulls(made.full_name)] == []
    assert [p.number for p in forge.list_pulls(made.full_name, state="closed", base="main")] == [pr.number]


def test_merging_twice_is_refused_and_a_moved_head_is_worth_a_retry(repo, forge) -> None:
    made, work = repo
    pr = open_review_branch(repo, forge)
    work.commit("config.yaml", "version: 1.2.4\n")
    work("push", "-q", "origin", "HEAD:shipline/bump")
    wait_until(lambda: forge.get_pull(made.full_name, pr.number).head_sha != pr.head_sha, timeout=30,
               what="Gitea saw the new head")
    with pytest.raises(ForgeUnavailable) as moved:
        forge.merge_pull(made.full_name, pr.number, head_sha=pr.head_sha)
    assert moved.value.status == 409 and "head out of date" in str(moved.value)
    merge_when_checked(forge, made.full_name, forge.get_pull(made.full_name, pr.number))
    with pytest.raises(ForgeRefused) as again:
        forge.merge_pull(made.full_name, pr.number)
    assert again.value.status == 405 and "already merged" in str(again.value)


def test_closing_without_merging_and_reopening(repo, forge) -> None:
    made, _ = repo
    pr = open_review_branch(repo, forge)
    closed = forge.update_pull(made.full_name, pr.number, state="closed")
    assert (closed.state, closed.merged) == ("closed", False)
    assert forge.find_open_pull(made.full_name, head=pr.head, base="main") is None
    assert forge.update_pull(made.full_name, pr.number, state="open").state == "open"


def test_a_bad_token_is_refused_and_its_value_is_never_in_the_message(stack: Stack, repo) -> None:
    made, _ = repo
    with GiteaClient(stack.gitea.api_url, "f" * 40) as bad, pytest.raises(ForgeRefused) as refused:
        bad.list_pulls(made.full_name)
    assert refused.value.status == 401 and "f" * 40 not in str(refused.value)


def test_an_unknown_repository_is_refused(forge) -> None:
    with pytest.raises(ForgeRefused) as refused:
        forge.create_pull("dev/no-such-repo", head="a", base="main", title="t")
    assert refused.value.status == 404


def test_an_unknown_head_branch_is_worth_a_retry(repo, forge) -> None:
    """Gitea cannot tell a branch it has not registered yet from one that does not exist."""
    made, _ = repo
    with pytest.raises(ForgeUnavailable) as later:
        forge.create_pull(made.full_name, head="never-pushed", base="main", title="t")
    assert later.value.status == 404


def test_a_forge_that_is_down_is_worth_a_retry() -> None:
    with GiteaClient(f"http://127.0.0.1:{free_port()}/api/v1", "t") as down, pytest.raises(ForgeUnavailable) as exc:
        down.get_pull("dev/shop", 1)
    assert exc.value.status is None and "ConnectError" in str(exc.value)


def test_repository_names_are_owner_slash_name(forge) -> None:
    for bad in ("shop", "a/b/c", "/shop", "dev/"):
        with pytest.raises(ValueError, match="owner/name"):
            forge.get_pull(bad, 1)
