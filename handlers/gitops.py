"""A cached working clone of a manifests repository: sync, read trailers, commit, push.

GitPython with argument lists only (no shell strings). Every network command has a hard
timeout (``GIT_TIMEOUT``); prompts are disabled so a missing credential fails instead of hanging.
The clone lives under the caller's state dir and is reused: later syncs fetch and hard-reset.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from git import Actor, Repo
from git.exc import GitCommandError, InvalidGitRepositoryError, NoSuchPathError

from handlers.errors import PermanentError, TransientError
from handlers.validate import validate_ref, validate_relpath

GIT_TIMEOUT = 120
"""Seconds before a fetch or push is killed."""
GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0"}
LOCAL_BRANCH = "shipline-work"
TRAILER_EVENT = "Shipline-Event"
TRAILER_ENVIRONMENT = "Shipline-Environment"
_REJECTED = ("[rejected]", "non-fast-forward", "fetch first", "cannot lock ref", "failed to update ref",
             "[remote rejected]", "stale info")
_AUTHOR_RE = re.compile(r"^\s*(?P<name>[^<>\n]+?)\s*<(?P<email>[^<>\s]+)>\s*$")


class PushRejected(TransientError):
    """The remote moved under us (non-fast-forward or a lost ref-lock race): re-apply and retry."""


def parse_author(text: str) -> Actor:
    """``Name <email>`` as a GitPython ``Actor``; ``PermanentError`` when malformed."""
    match = _AUTHOR_RE.match(text)
    if match is None:
        raise PermanentError(f"commit_author {text!r} is not 'Name <email>'")
    return Actor(match["name"], match["email"])


def branch_name(branch: str) -> str:
    validate_ref(f"refs/heads/{branch}", field="branch")
    return branch


class ManifestsRepo:
    """One working clone of ``url`` under ``workdir``; ``branch`` is the default base."""

    def __init__(self, url: str, branch: str, workdir: Path) -> None:
        self.url = url
        self.branch = branch_name(branch)
        self.workdir = workdir
        self._repo: Repo | None = None

    @property
    def repo(self) -> Repo:
        if self._repo is None:
            self._repo = self._open_or_init()
        return self._repo

    def _open_or_init(self) -> Repo:
        try:
            repo = Repo(self.workdir)
            if repo.remotes and repo.remotes.origin.url == self.url:
                return repo
        except (InvalidGitRepositoryError, NoSuchPathError):
            pass
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir.mkdir(parents=True)
        repo = Repo.init(self.workdir)
        repo.create_remote("origin", self.url)
        return repo

    def sync(self, prefer: str | None = None) -> str:
        """Fetch, then hard-reset to ``origin/<prefer>`` if it exists, else ``origin/<branch>``.

        Returns the branch the working copy now follows.
        """
        self._git("fetch", "--prune", "origin", "+refs/heads/*:refs/remotes/origin/*")
        base = prefer if prefer and self.has_remote_branch(branch_name(prefer)) else self.branch
        if not self.has_remote_branch(base):
            raise PermanentError(f"{self.url}: branch {base!r} does not exist")
        self._git("checkout", "-f", "-B", LOCAL_BRANCH, f"refs/remotes/origin/{base}")
        self._git("reset", "--hard", f"refs/remotes/origin/{base}")
        self._git("clean", "-ffdx")
        return base

    def has_remote_branch(self, branch: str) -> bool:
        return any(ref.path == f"refs/remotes/origin/{branch}" for ref in self.repo.references)

    def event_ids(self, limit: int, environment: str | None = None) -> set[str]:
        """``Shipline-Event`` trailer values of the last ``limit`` commits of HEAD; with
        ``environment``, only of commits for that environment (one event bumps several)."""
        fmt = (f"%(trailers:key={TRAILER_ENVIRONMENT},valueonly,separator=%x1f)%x1e"
               f"%(trailers:key={TRAILER_EVENT},valueonly,separator=%x1f)%x1d")
        out = self._git("log", f"-n{limit}", f"--format={fmt}")
        ids: set[str] = set()
        for commit in out.split("\x1d"):
            envs, _, events = commit.strip().partition("\x1e")
            if environment is not None and environment not in {e.strip() for e in envs.split("\x1f")}:
                continue
            ids |= {e.strip() for e in events.split("\x1f") if e.strip()}
        return ids

    def commit(self, message: str, author: Actor, paths: Sequence[str]) -> str:
        """Stage ``paths`` (repo-relative) and commit as ``author`` (also the committer)."""
        for path in paths:
            validate_relpath(path, field="path")
        self._git("add", "--", *paths)
        identity = {"GIT_AUTHOR_NAME": author.name or "", "GIT_AUTHOR_EMAIL": author.email or "",
                    "GIT_COMMITTER_NAME": author.name or "", "GIT_COMMITTER_EMAIL": author.email or ""}
        with self.repo.git.custom_environment(**identity):
            self._git("commit", "--no-verify", "--no-gpg-sign", "-m", message)
        return self.repo.head.commit.hexsha

    def push(self, branch: str) -> None:
        """Push HEAD to ``branch`` without force; ``PushRejected`` when the remote moved."""
        try:
            self._git("push", "--porcelain", "origin", f"HEAD:refs/heads/{branch_name(branch)}")
        except TransientError as exc:
            if any(word in str(exc) for word in _REJECTED):
                raise PushRejected(f"push to {branch} rejected: the remote moved") from exc
            raise

    def _git(self, *args: str) -> str:
        try:
            with self.repo.git.custom_environment(**GIT_ENV):
                return str(self.repo.git.execute(["git", *args], kill_after_timeout=GIT_TIMEOUT))
        except GitCommandError as exc:
            detail = f"{exc.stderr or ''} {exc.stdout or ''}".strip()
            raise TransientError(f"git {args[0]} failed for {self.url}: {detail}") from None
