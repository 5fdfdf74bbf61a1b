"""Which images a push changes, decided from the git diff in the mirror (payload paths may be cut).

An image triggers when a changed path matches one of its ``paths`` globs (``handlers.globs``);
without ``paths`` the default is ``<context>/**`` plus its Dockerfile. A new branch, a force push
(``before`` not an ancestor of ``after``, or unknown) and a tag push build every image.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass

from handlers.build.mirror import Mirror
from handlers.events import GitPushed
from handlers.globs import glob_regex, matches
from handlers.settings import ImageBuildConfig
from handlers.validate import validate_sha

__all__ = ["ChangeDecision", "ParentDiff", "changed_images", "decide", "default_paths", "diff_paths", "dockerfile_path",
           "glob_regex", "images_touched", "matches"]

SHOWN_PATHS = 5


@dataclass(frozen=True, slots=True)
class ParentDiff:
    """What a commit changed against its first parent, already read (``run.commit_facts``)."""

    parent: str
    paths: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ChangeDecision:
    """The images to build (config names, config order) and why, in words for the report."""

    images: tuple[str, ...]
    reason: str


def context_dir(image: ImageBuildConfig) -> str:
    """The context as a normalized repo-relative path: ``./x/`` → ``x``, ``""`` → ``.``."""
    return posixpath.normpath(image.context or ".")


def dockerfile_path(image: ImageBuildConfig) -> str:
    """Repo-relative Dockerfile path: the configured one or ``<context>/Dockerfile``."""
    if image.dockerfile:
        return posixpath.normpath(image.dockerfile)
    return posixpath.join(context_dir(image), "Dockerfile").removeprefix("./")


def default_paths(image: ImageBuildConfig) -> list[str]:
    context = context_dir(image)
    return ["**" if context == "." else f"{context}/**", dockerfile_path(image)]


def images_touched(images: Sequence[ImageBuildConfig], paths: Sequence[str]) -> tuple[str, ...]:
    """Names of the images whose globs match at least one of ``paths``."""
    return tuple(i.name for i in images if any(matches(p, i.paths or default_paths(i)) for p in paths))


def decide(images: Sequence[ImageBuildConfig], paths: Sequence[str]) -> ChangeDecision:
    """The pure half of ``changed_images``: given the changed paths, which images and why."""
    touched = images_touched(images, paths)
    if touched:
        return ChangeDecision(touched, f"paths changed: {_shown(paths)}")
    if not paths:
        return ChangeDecision((), "no path changed between the two commits")
    return ChangeDecision((), f"no image's paths changed: {_shown(paths)}")


def _shown(paths: Sequence[str]) -> str:
    more = len(paths) - SHOWN_PATHS
    return ", ".join(paths[:SHOWN_PATHS]) + (f" (+{more} more)" if more > 0 else "")


def changed_images(mirror: Mirror, images: Sequence[ImageBuildConfig], event: GitPushed,
                   known: ParentDiff | None = None) -> ChangeDecision:
    """Decide from the mirror; ``event.after`` must already be present (``Mirror.ensure_commit``).
    ``known``: the pushed commit's diff against its first parent; when that parent is ``event.before``
    (a push of one commit), it is the push's diff and git is asked nothing more."""
    everything = tuple(i.name for i in images)
    whole = _builds_everything(mirror, event, known)
    if whole:
        return ChangeDecision(everything, whole)
    if known is not None and known.parent == event.before:
        return decide(images, known.paths)
    return decide(images, diff_paths(mirror, event.before, event.after))


def _builds_everything(mirror: Mirror, event: GitPushed, known: ParentDiff | None) -> str | None:
    if event.is_tag:
        return f"tag push {event.short_ref}: every image builds"
    if event.created:
        return f"new branch {event.short_ref}: every image builds"
    if event.forced:
        return "force push: every image builds"
    before = validate_sha(event.before, field="before")
    if known is not None and known.parent == before:  # a push of one commit: its parent
        return None
    if _is_ancestor(mirror, before, event.after):  # the usual push: one git process decides
        return None
    if not mirror.has_commit(before):
        return f"previous commit {before[:7]} is unknown (force push?): every image builds"
    return f"force push ({before[:7]} is not an ancestor): every image builds"


def _is_ancestor(mirror: Mirror, before: str, after: str) -> bool:
    return mirror.try_run("merge-base", "--is-ancestor", before, after) is not None


def diff_paths(mirror: Mirror, before: str, after: str) -> list[str]:
    """Every path added, modified, deleted or renamed (both sides) between two commits."""
    out = mirror.run("diff", "--name-only", "--no-renames", "-z", validate_sha(before), validate_sha(after))
    return [p for p in out.split("\0") if p]
