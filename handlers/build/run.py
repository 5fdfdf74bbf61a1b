"""``build_push``: one push in, the changed images built (or re-tagged) and pushed, a report out.

Order of work: refuse unsafe input → is this ref built at all (``routing.build_reason``) → start
``bud`` for the images the push's own paths name, where its command line is known before the
fetch (``handlers.build.prestart``) → fetch the mirror (every ref when a tag template names
``{describe}``, else only the pushed commit) → which images changed → per image, in up to
``settings.parallelism`` threads: render tags, compute the content key, re-tag a known manifest
or export + build + push, record the key.
Only images in ``repo.images`` are ever built. Idempotent: running it again for the same push
re-tags what was already pushed. The retry policy is in the package docstring.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from handlers.build.backends import make_builder
from handlers.build.builder import Builder, BuildSpec, GitSource, Prestarting
from handlers.build.cache import BuildIndex, context_key, context_keys, reusable
from handlers.build.changes import ParentDiff, changed_images, context_dir, decide, dockerfile_path
from handlers.build.errors import BuildFailed, Superseded
from handlers.build.mirror import Mirror, Want
from handlers.build.prestart import PrestartedBud
from handlers.build.registry import client_for, is_insecure, ping_kept, registry_image
from handlers.build.report import BuildIncomplete, BuildReport, ImageResult
from handlers.build.tags import TagValues, needs_describe, render, templates_for, values_for
from handlers.build.workspace import checkout_dir, kept_context
from handlers.errors import ConfigError, PermanentError, TransientError
from handlers.events import GitPushed
from handlers.images import ImageRef
from handlers.routing import build_reason
from handlers.settings import BuildSettings, ImageBuildConfig, RegistryConfig, RepoConfig
from handlers.validate import validate_ref, validate_sha

__all__ = ["BuildIncomplete", "BuildReport", "ImageResult", "build_push"]


def build_push(repo: RepoConfig, event: GitPushed, *, settings: BuildSettings, registries: list[RegistryConfig],
               state_dir: Path, should_continue: Callable[[], bool] = lambda: True,
               builder: Builder | None = None) -> BuildReport:
    """Build and push the images ``event`` changed in ``repo``.

    ``should_continue`` is polled before each image and every ~0.5 s during a build; ``False``
    stops the running build and marks the rest ``superseded``. It must not raise. ``builder``
    defaults to ``build.backend``'s (``handlers.build.backends``). Raises ``TransientError`` (``GitUnavailable``
    before any image; ``BuildIncomplete`` after all of them) or ``PermanentError`` for bad input.
    """
    validate_ref(event.ref)
    sha = "" if event.deleted else validate_sha(event.after, field="after")
    report = BuildReport(repo=repo.name, ref=event.ref, sha=sha)
    skip = build_reason(repo, event) or (None if repo.images else f"repo {repo.name} configures no images")
    if skip:
        return replace(report, nothing_to_build_reason=skip)
    tagged = needs_describe(repo.images, event)  # describe reads the remote's tags: bring them too
    builder = builder or make_builder(settings, state_dir=state_dir, registries=registries)
    with _prestarted(repo, event, settings, state_dir, builder, tagged) as prestarted:
        pings = _ping_registries(repo.images, registries)  # their round trips overlap the fetch's
        mirror = Mirror.open(state_dir=state_dir, name=repo.name, url=repo.url,
                             want=Want(sha, event.ref, tags=tagged))
        # every image's content key, read by its own git process while this one reads the commit
        keys = _BESIDE.submit(context_keys, mirror, sha, [(i, dockerfile_path(i)) for i in repo.images])
        facts = commit_facts(mirror, sha)
        sha = facts.sha
        report = replace(report, sha=sha)
        if facts.made_by_shipline:
            return replace(report, nothing_to_build_reason=f"{sha[:7]} is Shipline's own commit (Shipline-Bot trailer)")
        decision = changed_images(mirror, repo.images, event, facts.parent_diff)
        if not decision.images:
            return replace(report, nothing_to_build_reason=decision.reason)
        values = values_for(mirror, event, sha, with_describe=tagged)
        job = _Job(repo, event, mirror, values, facts.committed_at, registries, state_dir, settings, builder,
                   should_continue, keys, pings, prestarted)
        chosen = [i for i in repo.images if i.name in decision.images]
        with ThreadPoolExecutor(max_workers=settings.parallelism, thread_name_prefix="build") as pool:
            results = tuple(pool.map(job.run, chosen))
    report = replace(report, images=results, change_reason=decision.reason)
    if any(r.retryable for r in results):
        raise BuildIncomplete(report)
    return report


@dataclass(frozen=True, slots=True)
class CommitFacts:
    sha: str
    """The commit itself (a tag object's id is peeled)."""
    made_by_shipline: bool
    """Shipline's bump commits never trigger builds (they would loop when manifests share the app repo)."""
    committed_at: datetime
    """The commit's committer date: the image's ``created`` label, the same for every build of the commit."""
    parent_diff: ParentDiff | None = None
    """The paths it changed against its first parent (None for a root commit): a one-commit push's diff."""


def commit_facts(mirror: Mirror, sha: str) -> CommitFacts:
    """One ``git log`` for the commit ``sha`` names, with its first-parent diff; when it is not in the
    mirror, every ref is fetched once (``Mirror.ensure_commit``: ``CommitNotFound`` if it is still missing)."""
    form = ["-z", "--name-only", "--no-renames", "--diff-merges=first-parent",
            "--format=%H%x00%ct%x00%P%x00%(trailers:key=Shipline-Bot,valueonly)%x00"]
    out = mirror.try_run("log", "-1", *form, f"{validate_sha(sha)}^{{commit}}")
    if out is None:
        out = mirror.run("log", "-1", *form, mirror.ensure_commit(sha))
    commit, stamp, parents, trailer, changes = out.split("\0", 4)
    first = parents.split(" ")[0]
    # -z ends the commit's part with NUL and a newline, then NUL-terminated paths
    paths = tuple(p for p in changes.removeprefix("\0\n").split("\0") if p)
    return CommitFacts(validate_sha(commit, field="peeled"), trailer.strip().lower() == "true",
                       datetime.fromtimestamp(int(stamp), UTC),
                       ParentDiff(validate_sha(first, field="parent"), paths) if first else None)


def made_by_shipline(mirror: Mirror, sha: str) -> bool:
    return commit_facts(mirror, sha).made_by_shipline


@dataclass(frozen=True)
class _Job:
    repo: RepoConfig
    event: GitPushed
    mirror: Mirror
    values: TagValues
    committed_at: datetime
    registries: list[RegistryConfig]
    state_dir: Path
    settings: BuildSettings
    builder: Builder
    should_continue: Callable[[], bool]
    keys: Future[dict[str, str]]
    """``context_keys`` of the repo's images; one it lacks is read alone (``context_key``)."""
    pings: dict[str, Future[None]]
    """``_ping_registries``: by registry host."""
    prestarted: dict[str, PrestartedBud]
    """``_prestarted``: by image name."""

    def run(self, image: ImageBuildConfig) -> ImageResult:
        """One image, never raising for an image-level failure: the outcome goes in the result."""
        started = time.monotonic()
        early = self.prestarted.get(image.name)
        log = early.process.log if early else _log_path(self.state_dir, self.repo.name, self.values.sha, image)
        try:
            result = self._run(image, log, early)
        except Superseded as exc:
            result = ImageResult(image.name, "superseded", reason=str(exc))
        except BuildFailed as exc:
            result = ImageResult(image.name, "failed", reason=str(exc), log_tail=exc.tail)
        except (PermanentError, ConfigError) as exc:
            result = ImageResult(image.name, "failed", reason=str(exc))
        except TransientError as exc:
            result = ImageResult(image.name, "failed", reason=str(exc), retryable=True)
        if early is not None:
            early.close()  # not used (re-tagged, skipped, failed before its build): it goes, with its log
        shown_log = str(log) if log.exists() else None
        return replace(result, log=shown_log, duration_seconds=round(time.monotonic() - started, 3))

    def _run(self, image: ImageBuildConfig, log: Path, early: PrestartedBud | None) -> ImageResult:
        if not self.should_continue():
            raise Superseded("a newer push arrived before this image started")
        tags = render(templates_for(image, self.event), self.values)
        if not tags:
            why = f"no tag template of {list(image.tags)} fits a {'tag' if self.event.is_tag else 'branch'} push"
            return ImageResult(image.name, "skipped", reason=why)
        ref = registry_image(image.name)
        pinging = self.pings.get(ref.host) or _BESIDE.submit(ping, ref, self.registries)
        key = self.keys.result().get(image.name) or context_key(self.mirror, self.values.sha, image,
                                                                 dockerfile_path(image))
        index = BuildIndex(self.state_dir)
        known = index.get(image.name, key)
        if known is not None:  # built before: re-tag if still there
            pinging.result()
            client = client_for(ref, self.registries)
            try:
                record = reusable(index, client, ref.repository, known)
                if record is not None:
                    for tag in tags:
                        client.retag(ref.repository, record.digest, tag)
                    why = f"same inputs as {record.sha[:7]} (already pushed as {record.tag})"
                    return ImageResult(image.name, "retagged", tags=tags, digest=record.digest, reason=why)
            finally:
                client.close()
        return self._build(image, ref, tags, key, log, pinging, early)

    def _build(self, image: ImageBuildConfig, ref: ImageRef, tags: tuple[str, ...], key: str,
               log: Path, pinging: Future[None], early: PrestartedBud | None) -> ImageResult:
        """``pinging``: the registry's ping, started with the fetch; a registry that cannot take
        the push fails the image before the build starts."""
        with self._context(image) as (context, dockerfile):
            pinging.result()
            spec = replace(_spec(image, ref, tags, context, dockerfile, self.settings), **self._oci_metadata(),
                           source=GitSource(self.repo.url, self.values.sha, context_dir(image),
                                            dockerfile_path(image)))
            log.parent.mkdir(parents=True, exist_ok=True)
            if early is not None and isinstance(self.builder, Prestarting):
                built = self.builder.build(spec, log=log, should_continue=self.should_continue, prestarted=early)
            else:
                built = self.builder.build(spec, log=log, should_continue=self.should_continue)
        BuildIndex(self.state_dir).put(image=image.name, key=key, digest=built.digest, tag=tags[0],
                                       sha=self.values.sha)
        return ImageResult(image.name, "built", tags=built.tags, digest=built.digest, reason="built and pushed")

    @contextlib.contextmanager
    def _context(self, image: ImageBuildConfig) -> Iterator[tuple[Path, Path]]:
        """The context dir and the Dockerfile at the pushed commit, for the build's duration: the
        image's kept checkout (``handlers.build.workspace``) when the Dockerfile is inside the
        context and no other build holds it, else a fresh export of both into a temp dir."""
        context, dockerfile = context_dir(image), dockerfile_path(image)
        kept = _kept_checkout(self.state_dir, self.repo.name, image)
        if kept is not None:
            where, inside = kept
            with kept_context(self.mirror, self.values.sha, context, where) as tree:
                if tree is not None:
                    yield tree, tree / inside
                    return
        work = self.state_dir / "work"
        work.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="build-", dir=work) as tmp:
            self.mirror.export(self.values.sha, Path(tmp), [] if context == "." else [context, dockerfile])
            yield Path(tmp) / context, Path(tmp) / dockerfile

    def _oci_metadata(self) -> dict[str, dict[str, str]]:
        """``labels=`` or ``annotations=`` for the spec, as ``build.oci_metadata`` says."""
        keys = {
            "org.opencontainers.image.revision": self.values.sha,
            "org.opencontainers.image.source": public_url(self.repo.url),
            "org.opencontainers.image.created": self.committed_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        return {self.settings.oci_metadata: keys}


def _spec(image: ImageBuildConfig, ref: ImageRef, tags: tuple[str, ...], context: Path, dockerfile: Path,
          settings: BuildSettings) -> BuildSpec:
    """What ``image`` builds from ``context``, but for its OCI keys and source (added by the build)."""
    return BuildSpec(image=ref.name, tags=tags, context=context, dockerfile=dockerfile,
                     timeout_seconds=float(settings.timeout_seconds), build_args=image.build_args,
                     target=image.target)


def _kept_checkout(state_dir: Path, repo: str, image: ImageBuildConfig) -> tuple[Path, str] | None:
    """The image's kept checkout and its Dockerfile's path in the context, or None when the
    Dockerfile lies outside the context (the build exports both)."""
    context, dockerfile = context_dir(image), dockerfile_path(image)
    inside = dockerfile.removeprefix("" if context == "." else f"{context}/")
    if inside == dockerfile and context != ".":
        return None
    return checkout_dir(state_dir, repo, image.name), inside


def _log_path(state_dir: Path, repo: str, sha: str, image: ImageBuildConfig) -> Path:
    slug = re.sub(r"[^A-Za-z0-9]+", "_", image.name).strip("_")[-60:]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    return state_dir / "build-logs" / repo / f"{sha[:12]}-{slug}-{stamp}.log"


@contextlib.contextmanager
def _prestarted(repo: RepoConfig, event: GitPushed, settings: BuildSettings, state_dir: Path, builder: Builder,
                tagged: bool) -> Iterator[dict[str, PrestartedBud]]:
    """``bud`` started now, before the fetch, for each image the push's own paths name (up to
    ``parallelism``), where its command line is already known (``Prestarting.prestarts``): a branch
    push, images built from a kept checkout that exists (``handlers.build.prestart``). A guess the commit
    proves wrong is stopped unused; one that cannot start only loses its head start. Within the
    block: by image name; leaving it stops every one no build took."""
    early = settings.prestart and isinstance(builder, Prestarting) and builder.prestarts(settings.oci_metadata)
    if tagged or not (early and event.is_branch and not (event.created or event.forced) and event.paths_complete):
        yield {}
        return
    named = decide(repo.images, event.changed_paths).images
    values = TagValues(sha=validate_sha(event.after), describe=None, branch=event.short_ref, tag=None)
    started: dict[str, PrestartedBud] = {}
    for image in [i for i in repo.images if i.name in named][:settings.parallelism]:
        kept = _kept_checkout(state_dir, repo.name, image)
        if kept is None or not (kept[0] / "complete").exists():  # buildah looks at the context as it starts
            continue
        with contextlib.suppress(PermanentError, OSError):
            tags = render(templates_for(image, event), values)
            if tags:
                tree = kept[0] / "tree"
                spec = _spec(image, registry_image(image.name), tags, tree, tree / kept[1], settings)
                started[image.name] = builder.prestart(spec, log=_log_path(state_dir, repo.name, values.sha, image))
    try:
        yield started
    finally:
        for bud in started.values():
            bud.close()


_BESIDE = ThreadPoolExecutor(max_workers=16, thread_name_prefix="build-beside")
"""Work off a build's critical path: the registry pings (beside the fetch) and the content keys
(beside the commit's facts)."""


def _ping_registries(images: Sequence[ImageBuildConfig], registries: list[RegistryConfig]) -> dict[str, Future[None]]:
    """One ``ping`` per registry host the images push to, started now: on a remote registry its
    connection and TLS round trips would otherwise follow the fetch and the checkout. A name that
    is not a valid image is left to its own image to fail on (``_Job._run``)."""
    started: dict[str, Future[None]] = {}
    for image in images:
        with contextlib.suppress(PermanentError):
            ref = registry_image(image.name)
            if ref.host not in started:
                started[ref.host] = _BESIDE.submit(ping, ref, registries)
    return started


def ping(ref: ImageRef, registries: list[RegistryConfig]) -> None:
    """``RegistryUnavailable`` unless ``ref``'s registry answers ``GET /v2/`` (``ping_kept``)."""
    ping_kept(ref.host, insecure=is_insecure(ref.host, registries))


def public_url(url: str) -> str:
    """The clone URL without user-info, so a token in it never lands in an image label."""
    parts = urlsplit(url)
    if not parts.scheme or "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
