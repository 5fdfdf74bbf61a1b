"""A cached clone of a manifests repository: fetch, read trees and trailers, commit, push.

Argument lists only (no shell strings). Every command has a hard timeout (``GIT_TIMEOUT``);
prompts are disabled so a missing credential fails instead of hanging. The clone lives under
the caller's state dir and is reused.

Two ways to use it. ``sync`` fetches every branch and hard-resets a clean working tree (the sync
renders from it). A bump works on objects only, never on a working tree: ``fetch_head`` fetches
the one branch it needs, ``tree``/``read_blobs`` read the commit, ``commit_files`` writes the new
blobs, trees and commit with ``git fast-import`` (which reads only the trees along the edited
paths) and ``push`` sends that commit. No checkout, no hooks, no filters: what is edited is the
blob as stored, and nothing from the repository runs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class TreeEntry:
    """One ``git ls-tree -r`` line: a blob (or symlink, or submodule) of a commit's tree."""

    rel: str
    mode: str
    oid: str


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
        self.pending: str | None = None
        """The commit ``push`` sends: the last ``commit_files`` result."""

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

    def fetch_head(self, prefer: str | None = None) -> tuple[str, str]:
        """Fetch what a bump needs; return the branch to build on and its head commit.

        That is ``origin/<prefer>`` if it exists, else ``origin/<branch>``. Only the one branch is
        fetched (no tags) unless ``prefer`` names another branch, which may not exist yet.
        """
        if prefer and prefer != self.branch:
            self._run("fetch", "--prune", "--no-tags", "origin", "+refs/heads/*:refs/remotes/origin/*")
            base = prefer if self.has_remote_branch(branch_name(prefer)) else self.branch
            if not self.has_remote_branch(base):
                raise PermanentError(f"{self.url}: branch {base!r} does not exist")
        else:
            base = self.branch
            try:
                self._run("fetch", "--no-tags", "origin", f"+refs/heads/{base}:refs/remotes/origin/{base}")
            except TransientError as exc:
                if "couldn't find remote ref" in str(exc):
                    raise PermanentError(f"{self.url}: branch {base!r} does not exist") from None
                raise
        head = self._run("rev-parse", "--verify", f"refs/remotes/origin/{base}^{{commit}}").decode().strip()
        return base, head

    def tree(self, commit: str) -> list[TreeEntry]:
        """Every non-tree entry of ``commit``'s tree, with its mode and object id."""
        out = self._run("ls-tree", "-r", "-z", "--full-tree", commit).decode("utf-8", "surrogateescape")
        entries = []
        for line in out.split("\0"):
            if line:
                meta, rel = line.split("\t", 1)
                mode, _, oid = meta.split(" ")
                entries.append(TreeEntry(rel, mode, oid))
        return entries

    def read_blobs(self, oids: Sequence[str]) -> dict[str, bytes]:
        """The content of each blob id (one ``git cat-file --batch``)."""
        if not oids:
            return {}
        out = self._run("cat-file", "--batch", stdin="".join(f"{o}\n" for o in oids).encode())
        blobs, cursor = {}, 0
        for oid in oids:
            header_end = out.index(b"\n", cursor)
            name, kind, size = out[cursor:header_end].decode().split(" ")
            if name != oid or kind != "blob":
                raise TransientError(f"git cat-file answered {name} {kind} for blob {oid} in {self.url}")
            start = header_end + 1
            blobs[oid] = out[start:start + int(size)]
            cursor = start + int(size) + 1
        return blobs

    def commit_files(self, parent: str, files: Mapping[str, tuple[str, bytes]], message: str,
                     author: Actor) -> str:
        """A commit on ``parent`` with ``files`` (path → (mode, content)) replaced; it is what
        ``push`` sends next. Written by ``git fast-import``: no index, no working tree, no hooks."""
        for path in files:
            validate_relpath(path, field="path")
        who = f"{author.name} <{author.email}> {int(time.time())} +0000"
        body = message.encode()
        stream = [b"feature done\ncommit refs/shipline/bump\nmark :1\n",
                  f"author {who}\ncommitter {who}\ndata {len(body)}\n".encode(), body,
                  f"\nfrom {parent}\n".encode()]
        for path, (mode, data) in sorted(files.items()):
            stream += [f"M {mode} inline ".encode() + _quoted(path) + f"\ndata {len(data)}\n".encode(), data, b"\n"]
        stream.append(b"\nget-mark :1\ndone\n")
        out = self._run("fast-import", "--quiet", "--force", stdin=b"".join(stream))
        self.pending = out.decode().split()[-1]
        return self.pending

    def has_remote_branch(self, branch: str) -> bool:
        return any(ref.path == f"refs/remotes/origin/{branch}" for ref in self.repo.references)

    def event_ids(self, limit: int, environment: str | None = None, rev: str = "HEAD") -> set[str]:
        """``Shipline-Event`` trailer values of the last ``limit`` commits of ``rev``; with
        ``environment``, only of commits for that environment (one event bumps several)."""
        fmt = (f"%(trailers:key={TRAILER_ENVIRONMENT},valueonly,separator=%x1f)%x1e"
               f"%(trailers:key={TRAILER_EVENT},valueonly,separator=%x1f)%x1d")
        out = self._run("log", f"-n{limit}", f"--format={fmt}", rev, "--").decode()
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
        """Push the last ``commit_files`` commit (else HEAD) to ``branch`` without force;
        ``PushRejected`` when the remote moved."""
        try:
            self._run("push", "--porcelain", "origin", f"{self.pending or 'HEAD'}:refs/heads/{branch_name(branch)}")
        except TransientError as exc:
            if any(word in str(exc) for word in _REJECTED):
                raise PushRejected(f"push to {branch} rejected: the remote moved") from exc
            raise

    def _run(self, *args: str, stdin: bytes | None = None) -> bytes:
        """``git <args>`` in the clone, raw stdout; ``TransientError`` with git's words on failure."""
        self.repo  # noqa: B018 - opens (or creates) the clone first
        try:
            done = subprocess.run(["git", *args], cwd=self.workdir, input=stdin, capture_output=True,
                                  env={**os.environ, **GIT_ENV}, timeout=GIT_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise TransientError(f"git {args[0]} timed out after {GIT_TIMEOUT}s for {self.url}") from None
        if done.returncode != 0:
            detail = f"{done.stderr.decode(errors='replace')} {done.stdout.decode(errors='replace')}".strip()
            raise TransientError(f"git {args[0]} failed for {self.url}: {detail}")
        return done.stdout

    def _git(self, *args: str) -> str:
        try:
            with self.repo.git.custom_environment(**GIT_ENV):
                return str(self.repo.git.execute(["git", *args], kill_after_timeout=GIT_TIMEOUT))
        except GitCommandError as exc:
            detail = f"{exc.stderr or ''} {exc.stdout or ''}".strip()
            raise TransientError(f"git {args[0]} failed for {self.url}: {detail}") from None


def _quoted(path: str) -> bytes:
    """``path`` C-quoted for ``git fast-import`` (any byte is safe in a quoted path)."""
    out = bytearray(b'"')
    for byte in path.encode("utf-8", "surrogateescape"):
        if byte in (0x22, 0x5C):
            out += b"\\" + bytes([byte])
        elif byte < 0x20 or byte == 0x7F:
            out += f"\\{byte:03o}".encode()
        else:
            out.append(byte)
    return bytes(out + b'"')
