"""A cached bare mirror per repository: clone once, then only fetch; export exact commits.

Layout: ``<state_dir>/mirrors/<repo name>.git`` (``git clone --mirror``), guarded by an ``flock`` on
``<name>.git.lock`` so concurrent builds of one repo never fetch into it at the same time. A clone
goes to a temporary directory first and is renamed into place, so a half clone is never used.

A build opens the mirror for one ``Want``: nothing is fetched when the commit is already here (a
retry, a replay), else only that commit, straight into the pushed ref: over http(s) in one request
(``handlers.build.packfetch``: the tips of the ref and of ``HEAD`` offered as ``have``, the ref
written by GitPython), else, or when that answer is not a usable pack, by ``git fetch origin
+<sha>:<ref>`` (one request fewer than listing every ref, and nothing but that ref's new objects
however many refs the remote has). Whatever that cannot do (the commit is no longer a branch tip,
the server refuses unadvertised ids) falls back to the full fetch. A build that tags with
``{describe}`` also needs the remote's tags as they are: ``ls-refs`` lists them beside the
commit's fetch (so the usual push waits for one round trip), a second fetch brings the objects of
new and moved tags, and one ``git update-ref`` transaction moves and prunes them (``Want.tags``);
when the server cannot list them that way, the full fetch, as before (42 against 22 ms here, side
by side; 99 against 37 ms with the server 10 ms away each way).
That fetch skips git's automatic maintenance (``git maintenance run --auto``, a process of its own
after every fetch, 4-9 ms of the fetch here): ``maintain_all`` runs it from the worker's idle tick,
under the same lock, so loose objects and packs are still consolidated.
The commit's facts (its date, its trailer) and the peeling of a tag object to its commit come from
one ``git log`` (``handlers.build.run.commit_facts``).

Nothing from the repository is executed: no checkout, no hooks (a mirror has none), no filters
configured; ``export`` streams ``git archive`` into Python's ``tarfile`` with the ``data`` filter
(no absolute paths, no links leaving the destination, no device files). ``info/attributes``
(written at clone, rewritten at open when older) turns off ``export-subst``/``export-ignore`` and
every checkout conversion (``text``/``eol``, ``filter``, ``ident``, ``working-tree-encoding``), so
an export, or a kept checkout (``handlers.build.workspace``), is the commit's tree byte for byte:
before, a repository's ``* text eol=crlf`` turned every LF of the export into CRLF.
"""

from __future__ import annotations

import configparser
import contextlib
import logging
import os
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import git

from handlers.build.errors import CommitNotFound, GitUnavailable
from handlers.build.filelock import flocked
from handlers.build.packfetch import DEFAULT_UNPACK_LIMIT, Fetch, Outcome, fetch_objects, list_refs
from handlers.errors import PermanentError
from handlers.validate import validate_clone_url, validate_ref, validate_relpath, validate_sha

log = logging.getLogger("shipline.build")

GIT_TIMEOUT_SECONDS = 600
"""Clone/fetch/archive limit; past it the git process is killed and the call is transient."""
GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false", "GIT_LITERAL_PATHSPECS": "1",
    "GIT_ALLOW_PROTOCOL": "http:https:ssh:git",
}
"""No prompts, no pathspec magic, and never ``ext::``/``file::`` transports whatever the URL says."""
NEUTRAL_ATTRIBUTES = "* -export-subst -export-ignore -text -eol -filter -ident -working-tree-encoding\n"


@dataclass(frozen=True, slots=True)
class Want:
    """The one commit a build needs, and the ref it was pushed to (where a targeted fetch puts it)."""

    sha: str
    ref: str
    tags: bool = False
    """Also bring every tag in line with the remote's (``{describe}`` reads them)."""


@dataclass(frozen=True, slots=True)
class _GitConfig:
    origin_url: str | None
    unpack_limit: int
    """git's own choice between loose objects and a kept pack: ``fetch.unpackLimit``, else
    ``transfer.unpackLimit``, else 100."""
    refs_in_files: bool
    """Refs are files GitPython can write (not a ``reftable`` repository)."""


class Mirror:
    """One repository's bare mirror. Build with ``Mirror.open``; methods are safe to call again."""

    def __init__(self, path: Path, url: str) -> None:
        self.path = path
        self.url = url
        self.repo = _kept_repo(path)
        self._read: _GitConfig | None = None

    @classmethod
    def open(cls, *, state_dir: Path, name: str, url: str, want: Want | None = None) -> Mirror:
        """The mirror of ``url`` named ``name``; cloned on first use, fetched otherwise (every ref,
        or only ``want`` when given: see the module docstring)."""
        validate_clone_url(url, field="repo.url")
        path = state_dir / "mirrors" / f"{name}.git"
        with _locked(path):
            if not path.exists():
                _clone(url, path)
                return cls(path, url)
            mirror = cls(path, url)
            _neutralise(path)
            if mirror.origin_url() != url:  # the config moved the repo
                mirror.run("remote", "set-url", "origin", url)
                mirror._read = None
            if want is None or not mirror._fetched_only(want):
                mirror._fetch_unlocked()
            return mirror

    def _fetched_only(self, want: Want) -> bool:
        """``want.sha`` is here, already or fetched alone into ``want.ref``; False: fetch everything.

        The usual push brings a commit the mirror has never seen, so git is not asked first: a loose
        object file answers for a retry soon after, and only a failed fetch asks whether the commit
        is packed here already (a replay while the server is down still builds).
        """
        sha, ref = validate_sha(want.sha), validate_ref(want.ref)
        if want.tags:
            return self._fetched_with_tags(sha, ref)
        if self._loose(sha):
            return True
        fetched = self._fetch_in_one_request(sha, ref)
        if fetched.outcome is Outcome.FETCHED:
            return True
        if fetched.outcome is Outcome.UNREACHABLE:
            log.warning("mirror %s: the server did not answer (%s)", self.path.name, fetched.why)
            return self.has_commit(sha)
        log.info("mirror %s: one-request fetch of %s not used (%s); git fetch instead", self.path.name, sha[:12],
                 fetched.why)
        try:
            self.repo.git.execute(["git", "-c", "maintenance.auto=false", "fetch", "--no-tags",
                                   "--no-write-fetch-head", "origin", f"+{sha}:{ref}"],
                                  kill_after_timeout=GIT_TIMEOUT_SECONDS)
        except git.GitCommandError:
            return self.has_commit(sha)
        return True

    def _fetched_with_tags(self, sha: str, ref: str) -> bool:
        """``sha`` into ``ref``, and the tags as the remote has them (new, moved and deleted ones,
        as ``git fetch --prune`` leaves them): ``ls-refs`` lists the tags while the one ``fetch``
        brings the commit, side by side, so the usual push (no tag changed) waits for one round trip,
        not two; a second ``fetch`` brings the objects of new and moved tags. False when any of it is
        not usable: the caller fetches everything, as before (an unreachable server then fails the
        build, as ``git fetch`` did: ``describe`` cannot be trusted without the tags)."""
        listing = _LISTING.submit(self._tag_changes)
        fetched = Fetch(Outcome.FETCHED) if self._loose(sha) else self._fetch_in_one_request(sha, ref)
        changes = listing.result()
        if changes is None:
            return False
        if fetched.outcome is not Outcome.FETCHED:
            log.info("mirror %s: one-request fetch of %s not used (%s); git fetch instead", self.path.name, sha[:12],
                     fetched.why)
            return False
        moved, gone = changes
        missing = sorted(oid for oid in set(moved.values()) if not self._loose(oid))  # a tag push's came already
        if missing:
            fetched = self._fetch_objects(missing, ref)
            if fetched.outcome is not Outcome.FETCHED:
                log.info("mirror %s: %d new or moved tag(s) not fetched in one request (%s); git fetch instead",
                         self.path.name, len(missing), fetched.why)
                return False
        return self._set_tags(moved, gone)

    def _tag_changes(self) -> tuple[dict[str, str], list[str]] | None:
        """The remote's tags that are new or moved here (name → object id) and the ones it no longer
        has; None (logged) when it cannot list them in one request or names one this mirror refuses."""
        listed, remote = list_refs(self.url, "refs/tags/")
        if listed.outcome is not Outcome.FETCHED:
            log.info("mirror %s: tags not listed in one request (%s); git fetch instead", self.path.name, listed.why)
            return None
        try:
            remote = {validate_ref(name): validate_sha(oid) for name, oid in remote.items()}
        except PermanentError as exc:  # a name git would take but this mirror does not: git fetch decides
            log.info("mirror %s: %s; git fetch instead", self.path.name, exc)
            return None
        local = self._local_tags()
        if local is None:
            return None
        return {name: oid for name, oid in remote.items() if local.get(name) != oid}, sorted(set(local) - set(remote))

    def _local_tags(self) -> dict[str, str] | None:
        """None (logged) if git cannot list them: the full fetch will say why."""
        done = self._git("for-each-ref", "--format=%(objectname) %(refname)", "refs/tags/")
        if done.returncode != 0:
            log.info("mirror %s: tags not read (%s); git fetch instead", self.path.name, done.stderr.strip()[-300:])
            return None
        return {name: oid for oid, _, name in (line.partition(" ") for line in done.stdout.splitlines())}

    def _set_tags(self, moved: dict[str, str], gone: Sequence[str]) -> bool:
        """One ``git update-ref --stdin`` transaction; False (nothing changed) if git refuses it,
        e.g. an object the pack did not bring."""
        if not moved and not gone:
            return True
        script = "".join(f"update {name} {oid}\n" for name, oid in sorted(moved.items()))
        script += "".join(f"delete {name}\n" for name in gone)
        done = self._git("update-ref", "--stdin", stdin=script)
        if done.returncode != 0:
            log.info("mirror %s: tags not moved (%s); git fetch instead", self.path.name, done.stderr.strip()[-300:])
        return done.returncode == 0

    def _git(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """``git <args>`` in the mirror as a plain process (not GitPython's: the tag steps run beside
        the fetch, in another thread); the caller reads its status."""
        return subprocess.run(["git", "--git-dir", str(self.path), *args], input=stdin, capture_output=True, text=True,
                              env={**os.environ, **GIT_ENV}, timeout=GIT_TIMEOUT_SECONDS, check=False)

    def _fetch_objects(self, oids: Sequence[str], ref: str) -> Fetch:
        """``handlers.build.packfetch`` for ``oids`` (no ref moved), offering the tips of ``ref`` and
        ``HEAD`` as ``have``."""
        config = self._config()
        if not config.refs_in_files:
            return Fetch(Outcome.UNSUPPORTED, "refs kept in a reftable")
        return fetch_objects(self.path, self.url, oids[0], self._haves(ref), unpack_limit=config.unpack_limit,
                             env=GIT_ENV, also=oids[1:])

    def _fetch_in_one_request(self, sha: str, ref: str) -> Fetch:
        """``handlers.build.packfetch``, then ``ref`` moved to ``sha`` by GitPython (no process)."""
        fetched = self._fetch_objects([sha], ref)
        if fetched.outcome is Outcome.FETCHED and not (self._loose(sha) or self.has_commit(sha)):
            # the server sent no such object (a pack of nothing: it took a have for the want)
            return Fetch(Outcome.UNSUPPORTED, f"the pack did not hold {sha[:12]}")
        if fetched.outcome is Outcome.FETCHED:
            try:
                git.Reference(self.repo, ref).set_object(git.Object(self.repo, bytes.fromhex(sha)))
            except OSError as exc:  # a stale lock, a directory in the ref's way: git fetch will say which
                return Fetch(Outcome.UNSUPPORTED, f"cannot write {ref}: {exc.strerror or exc}")
        return fetched

    def _haves(self, ref: str) -> list[str]:
        """What the server need not send: the tips of ``ref`` and of ``HEAD`` (the remote's default
        branch), read from the ref files by GitPython. The pushed branch's own tip is the parent of
        the usual push, and a new branch usually starts on the default branch; when neither holds,
        the pack is only larger. Only these two, however many refs the mirror has: GitPython reads
        a packed ref by scanning ``packed-refs``, so every ref of a mirror with 5,000 took 12 s."""
        haves: dict[str, None] = {}
        for path in (ref, "HEAD"):
            with contextlib.suppress(ValueError, OSError):  # a new branch, an empty mirror
                haves[git.SymbolicReference.dereference_recursive(self.repo, path)] = None
        return list(haves)

    def _config(self) -> _GitConfig:
        """What the mirror reads from git's config, in one read of every level (as git reads it),
        kept for this ``Mirror``: parsing it is about 0.3 ms of a build's wait each time."""
        if self._read is None:
            limit = DEFAULT_UNPACK_LIMIT
            with self.repo.config_reader() as config:
                for section in ("transfer", "fetch"):
                    with contextlib.suppress(configparser.Error, ValueError):  # unset, or not a number
                        limit = int(config.get_value(section, "unpackLimit"))
                storage = str(config.get_value("extensions", "refStorage", default="files")).lower()
                origin = str(config.get_value('remote "origin"', "url", default="")) or None
            self._read = _GitConfig(origin, limit, storage == "files")
        return self._read

    def _loose(self, sha: str) -> bool:
        return (self.path / "objects" / sha[:2] / sha[2:]).is_file()

    def fetch(self) -> None:
        with _locked(self.path):
            self._fetch_unlocked()

    def _fetch_unlocked(self) -> None:
        try:
            self.repo.git.fetch("--prune", "origin", kill_after_timeout=GIT_TIMEOUT_SECONDS)
        except git.GitCommandError as exc:
            raise GitUnavailable(f"git fetch {self.url} failed: {_stderr(exc)}") from exc

    def origin_url(self) -> str | None:
        """``remote.origin.url``, from git's config as ``_config`` read it (no git process)."""
        return self._config().origin_url

    def has_commit(self, sha: str) -> bool:
        return self.try_run("cat-file", "-e", f"{validate_sha(sha)}^{{commit}}") is not None

    def ensure_commit(self, sha: str) -> str:
        """Fetch when ``sha`` is missing (``CommitNotFound`` if it still is); return the commit id.

        An annotated tag push may report the tag object's id: it is peeled to the commit it names.
        """
        peeled = self._peel(validate_sha(sha))
        if peeled is None:
            self.fetch()
            peeled = self._peel(sha)
            if peeled is None:
                raise CommitNotFound(f"commit {sha} is not in {self.url} (force-pushed away?)")
        return validate_sha(peeled, field="peeled")

    def _peel(self, sha: str) -> str | None:
        """The commit ``sha`` names (a tag object is peeled), or None when it is not here."""
        return self.try_run("rev-parse", "--verify", "--quiet", f"{sha}^{{commit}}")

    def run(self, *args: str) -> str:
        """``git <args>`` in the mirror (an argument list, never a shell); stdout without the newline.

        Local git failing on our own mirror means the input is wrong (a missing path, a bad rev):
        ``PermanentError`` with git's message.
        """
        try:
            return str(self.repo.git.execute(["git", *args], kill_after_timeout=GIT_TIMEOUT_SECONDS))
        except git.GitCommandError as exc:
            raise PermanentError(f"git {args[0]} failed in the {self.path.name} mirror: {_stderr(exc)}") from exc

    def try_run(self, *args: str) -> str | None:
        """Like ``run`` for yes/no questions (``merge-base --is-ancestor``, ``describe``): None on failure."""
        try:
            return str(self.repo.git.execute(["git", *args], kill_after_timeout=GIT_TIMEOUT_SECONDS))
        except git.GitCommandError:
            return None

    def export(self, sha: str, dest: Path, paths: Sequence[str] = ()) -> Path:
        """Write the tree of ``sha`` (limited to ``paths``, repo-relative) into ``dest``."""
        validate_sha(sha)
        specs = [validate_relpath(p, field="export path") for p in paths if p not in ("", ".")]
        dest.mkdir(parents=True, exist_ok=True)
        argv = ["git", "--git-dir", str(self.path), "archive", "--format=tar", sha, "--", *specs]
        env = {**os.environ, **GIT_ENV}
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as proc:
            assert proc.stdout is not None
            try:
                with tarfile.open(fileobj=proc.stdout, mode="r|") as archive:
                    archive.extractall(dest, filter="data")
            except tarfile.TarError as exc:
                proc.kill()
                raise PermanentError(f"cannot export {sha}: {exc}") from exc
            _, err = proc.communicate(timeout=GIT_TIMEOUT_SECONDS)
        if proc.returncode != 0:
            raise PermanentError(f"git archive {sha} {' '.join(specs)} failed: {err.decode(errors='replace')}")
        return dest


@dataclass(frozen=True, slots=True)
class Maintenance:
    """What ``maintain_all`` did: mirrors maintained, skipped (a build held them), failed (git's message)."""

    maintained: tuple[str, ...] = ()
    busy: tuple[str, ...] = ()
    failed: tuple[tuple[str, str], ...] = ()


def maintain_all(state_dir: Path) -> Maintenance:
    """``git maintenance run --auto`` in every mirror no build holds right now (a held one waits for
    the next tick). Git decides whether there is work; one failing mirror does not stop the rest."""
    maintained, busy, failed = [], [], []
    for path in sorted((state_dir / "mirrors").glob("*.git")):
        name = path.name.removesuffix(".git")
        with _locked(path, wait=False) as held:
            if not held:
                busy.append(name)
                continue
            try:
                git.Git(path).execute(["git", "maintenance", "run", "--auto", "--quiet"],
                                      env={**os.environ, **GIT_ENV}, kill_after_timeout=GIT_TIMEOUT_SECONDS)
            except git.GitCommandError as exc:
                failed.append((name, _stderr(exc)))
                continue
            maintained.append(name)
    return Maintenance(tuple(maintained), tuple(busy), tuple(failed))


def _clone(url: str, path: Path) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        git.Git().execute(["git", "clone", "--mirror", "--quiet", "--", url, str(tmp)],
                          env={**os.environ, **GIT_ENV}, kill_after_timeout=GIT_TIMEOUT_SECONDS)
    except git.GitCommandError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise GitUnavailable(f"git clone --mirror {url} failed: {_stderr(exc)}") from exc
    _neutralise(tmp)
    tmp.rename(path)


def _neutralise(path: Path) -> None:
    attributes = path / "info" / "attributes"
    with contextlib.suppress(FileNotFoundError):
        if attributes.read_text() == NEUTRAL_ATTRIBUTES:
            return
    attributes.parent.mkdir(exist_ok=True)
    attributes.write_text(NEUTRAL_ATTRIBUTES)


_repos: dict[Path, git.Repo] = {}
_repos_lock = threading.Lock()


def _kept_repo(path: Path) -> git.Repo:
    """GitPython's ``Repo`` for the mirror at ``path``, made once per process: making one reads the
    directory's layout, about 1 ms of every build's wait before its fetch request could go out. Safe
    to keep: a mirror's ``Repo`` is only used by path (refs, config, git processes), never through
    a cached object database, so a mirror cloned again at the same path is the same to it."""
    with _repos_lock:
        repo = _repos.get(path)
        if repo is None:
            repo = _repos[path] = git.Repo(path)
            repo.git.update_environment(**GIT_ENV)
        return repo


_LISTING = ThreadPoolExecutor(max_workers=8, thread_name_prefix="mirror-tags")
"""``ls-refs`` beside the fetch of a ``{describe}`` build's commit."""


@contextlib.contextmanager
def _locked(path: Path, *, wait: bool = True) -> Iterator[bool]:
    """Holds the mirror's lock within; ``wait=False`` gives up at once: yields whether it is held."""
    with flocked(path.with_name(path.name + ".lock"), wait=wait) as held:
        yield held


def _stderr(exc: git.GitCommandError) -> str:
    text = str(exc.stderr or exc).strip()
    return text[-500:]
