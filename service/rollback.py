"""Rollback: Git stays the source of truth, so a rollback is a revert commit.

``rollback: auto``: when a sync of a release leaves the environment Degraded (its health wait ran
out), Shipline reverts *its own* bump commit of that revision (trailer ``Shipline-Rollback-Of``),
syncs, notifies, and holds the bad tags back: the environment does not take them again until
another tag of the image arrives or someone promotes by hand. ``shipline rollback ENV [--to
REVISION]`` does the same on demand. A commit Shipline did not make is never reverted; the status
says why a rollback could not happen.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from handlers.errors import PermanentError, TransientError
from handlers.events import event_from_dict
from handlers.gitops import branch_name, parse_author
from handlers.images import normalize_image
from handlers.settings import EnvironmentConfig
from handlers.sync.reconcile import SyncResult
from handlers.validate import validate_sha
from service import notify
from service.environments import EnvironmentStatusStore
from service.store import EventRecord

if TYPE_CHECKING:
    from service.pipeline import Pipeline

log = logging.getLogger("shipline.rollback")
PUSH_ATTEMPTS = 5
GIT_TIMEOUT = 120


def _bumped(sha: str) -> str:
    return f"shipline:bump:commit:{sha}"


def _heldback(env: str) -> str:
    return f"shipline:heldback:{env}"


def remember_bump(r: Any, env: EnvironmentConfig, commit: str, records: list[EventRecord], ttl: int) -> None:
    """What a bump commit moved, so a rollback knows which tags to hold back."""
    images = {}
    for record in records:
        event = event_from_dict(record.event)
        tag = getattr(event, "tag", "")
        if tag:
            images[normalize_image(getattr(event, "image", ""))] = tag
    r.set(_bumped(commit), json.dumps({"environment": env.name, "images": images}), ex=ttl)


def held_back(r: Any, env: EnvironmentConfig, records: list[EventRecord]
              ) -> tuple[list[EventRecord], list[tuple[EventRecord, str]]]:
    """``records`` minus those whose tag a rollback holds back (with why). Another tag of a held
    image, or a promotion by hand, lifts the hold for that image."""
    holds = r.hgetall(_heldback(env.name))
    if not holds:
        return records, []
    keep, skipped = [], []
    for record in records:
        event = event_from_dict(record.event)
        image, tag = normalize_image(getattr(event, "image", "")), getattr(event, "tag", "")
        bad = holds.get(image)
        if bad is None:
            keep.append(record)
        elif bad == tag and not record.event_type.startswith("promote:"):
            skipped.append((record, f"{image}:{tag} is held back after a rollback of {env.name}; "
                                    "push a new tag or promote it by hand"))
        else:
            r.hdel(_heldback(env.name), image)
            keep.append(record)
    return keep, skipped


def timed_out(result: SyncResult) -> bool:
    """The sync applied a release and the environment did not become Healthy in time."""
    return result.health.status == "Degraded" and bool(result.applied)


def after_degraded(pipeline: Pipeline, env: EnvironmentConfig, result: SyncResult) -> str | None:
    """``rollback: auto``: revert Shipline's own bump of ``result.revision``; the new commit or None."""
    statuses = EnvironmentStatusStore(pipeline.r)
    bumped = pipeline.r.get(_bumped(result.revision))
    if not bumped or json.loads(bumped).get("environment") != env.name:
        why = f"{result.revision[:10]} is not a bump Shipline made for {env.name}: not reverted"
        statuses.note_rollback(env.name, {"outcome": "refused", "reason": why, "revision": result.revision})
        log.warning("rollback refused: %s", why, extra={"environment": env.name})
        return None
    if not pipeline.r.set(f"shipline:rolledback:{env.name}:{result.revision}", "1", nx=True,
                          ex=pipeline.config.redis.dedupe_ttl_seconds):
        return None  # already reverted (a retried sync)
    reason = f"{env.name} Degraded after {result.revision[:10]}: {result.health.reason}"[:1000]
    return roll_back(pipeline, env, [result.revision], reason)


def roll_back(pipeline: Pipeline, env: EnvironmentConfig, commits: list[str], reason: str) -> str:
    """Revert ``commits`` (Shipline's own, newest first) in one commit, hold their tags, sync."""
    with pipeline.lock(f"write:{env.git.url}:{env.git.branch}"):
        sha = revert(env, pipeline.state_dir, commits, reason)
    holds: dict[str, str] = {}
    for commit in commits:
        raw = pipeline.r.get(_bumped(commit))
        holds |= json.loads(raw).get("images", {}) if raw else {}
    if holds:
        pipeline.r.hset(_heldback(env.name), mapping=holds)
    status = {"outcome": "reverted", "reason": reason, "reverted": commits, "commit": sha,
              "held_back": holds, "at": time.time()}
    EnvironmentStatusStore(pipeline.r).note_rollback(env.name, status)
    notify.rolled_back(pipeline.config, env, status)
    log.info("rolled back", extra={"environment": env.name, "commit": sha, "reverted": commits})
    pipeline.request_sync(env.name)
    return sha


def by_hand(pipeline: Pipeline, env: EnvironmentConfig, to: str | None) -> str:
    """``shipline rollback ENV [--to REVISION]``: revert the last bump, or every commit after
    ``to`` (each must be Shipline's own bump of ``env``, else nothing is reverted)."""
    repo = _Workdir(env, pipeline.state_dir)
    repo.fetch()
    if to:
        commits = repo.lines("rev-list", f"{validate_sha(to, field='to')}..HEAD")
        if not commits:
            raise PermanentError(f"{env.name}: nothing after {to[:10]} on {env.git.branch}")
    else:
        commits = repo.lines("log", "--format=%H", f"--grep=Shipline-Environment: {env.name}",
                             "--grep=Shipline-Bot: true", "--all-match", "-n", "1", "HEAD")
        if not commits:
            raise PermanentError(f"{env.name}: no bump commit of Shipline's on {env.git.branch} to roll back")
    for commit in commits:
        repo.check_own(commit)
    return roll_back(pipeline, env, commits, f"rolled back by hand{f' to {to[:10]}' if to else ''}")


def revert(env: EnvironmentConfig, state_dir: Path, commits: list[str], reason: str) -> str:
    """One commit reverting ``commits`` on the environment's branch, pushed without force."""
    repo = _Workdir(env, state_dir)
    for attempt in range(1, PUSH_ATTEMPTS + 1):
        repo.fetch()
        for commit in commits:
            repo.check_own(commit)
            repo.git("revert", "--no-edit", "--no-commit", commit, what=f"revert {commit[:10]} (conflicts?)")
        trailers = "".join(f"Shipline-Rollback-Of: {c}\n" for c in commits)
        message = (f"Roll back {env.name}: revert {', '.join(c[:10] for c in commits)}\n\n{reason}\n\n{trailers}"
                   f"Shipline-Environment: {env.name}\nShipline-Bot: true\n")
        author = parse_author(env.commit_author)
        repo.git("-c", f"user.name={author.name}", "-c", f"user.email={author.email}", "commit", "-q", "-m", message)
        if repo.push():
            return repo.lines("rev-parse", "HEAD")[0]
        time.sleep(0.2 * attempt)
    raise TransientError(f"{env.name}: rollback push rejected {PUSH_ATTEMPTS} times")


class _Workdir:
    """A working clone for reverts (kept under the state dir, fetched each time)."""

    def __init__(self, env: EnvironmentConfig, state_dir: Path) -> None:
        self.env = env
        self.branch = branch_name(env.git.branch)
        self.path = state_dir / "rollback" / env.name
        if not (self.path / ".git").exists():
            self.path.mkdir(parents=True, exist_ok=True)
            self.git("init", "-q")
            self.git("remote", "add", "origin", env.git.url)

    def fetch(self) -> None:
        self._run("revert", "--quit")  # an earlier revert that stopped on a conflict
        self.git("fetch", "-q", "origin", f"+refs/heads/{self.branch}:refs/remotes/origin/{self.branch}",
                 what="fetch", transient=True)
        self.git("checkout", "-q", "-f", "-B", "rollback", f"refs/remotes/origin/{self.branch}")
        self.git("reset", "-q", "--hard", f"refs/remotes/origin/{self.branch}")

    def check_own(self, commit: str) -> None:
        body = "\n".join(self.lines("log", "-1", "--format=%B", validate_sha(commit, field="commit")))
        if "Shipline-Bot: true" not in body or f"Shipline-Environment: {self.env.name}" not in body:
            raise PermanentError(f"{self.env.name}: {commit[:10]} is not a commit Shipline made for this "
                                 "environment; Shipline reverts only its own bumps")

    def push(self) -> bool:
        done = self._run("push", "-q", "origin", f"HEAD:refs/heads/{self.branch}")
        if done.returncode == 0:
            return True
        if "rejected" in done.stderr or "fetch first" in done.stderr:
            return False
        raise TransientError(f"{self.env.name}: rollback push failed: {done.stderr.strip()[-500:]}")

    def lines(self, *args: str) -> list[str]:
        return [x for x in self.git(*args).splitlines() if x.strip()]

    def git(self, *args: str, what: str = "", transient: bool = False) -> str:
        done = self._run(*args)
        if done.returncode != 0:
            error = TransientError if transient else PermanentError
            raise error(f"{self.env.name}: git {what or args[0]} failed: {done.stderr.strip()[-500:]}")
        return done.stdout

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", "-C", str(self.path), *args], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT, check=False)
