"""Build events from payload values, validating every string on the way in.

Sources call these instead of the event constructors so that no unchecked ref, sha, tag,
digest, repository or path reaches the queue. Failures raise ``UnsafeInput``; the sources'
``parse`` (decorated with ``malformed_on_unsafe``) reports them as ``MalformedPayload``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from handlers.errors import MalformedPayload
from handlers.events import ZERO_SHA, GitPushed, ImagePushed
from handlers.validate import (
    validate_clone_url,
    validate_digest,
    validate_git_repo,
    validate_ref,
    validate_registry_host,
    validate_relpath,
    validate_repository,
    validate_sha,
    validate_tag,
    validate_text,
)

PATH_KEYS = ("added", "modified", "removed")


def is_zero(value: Any) -> bool:
    """A missing side of a ref update: ``null``, ``""`` or all zeros."""
    return value in (None, "") or (isinstance(value, str) and set(value) == {"0"})


def sha_or_zero(value: Any, *, field: str) -> str:
    """A commit id; ``null``/``""`` (a side that does not exist) becomes the zero sha."""
    return ZERO_SHA if value in (None, "") else validate_sha(value, field=field)


def commit_paths(commit: Any, *, field: str) -> tuple[set[str], bool]:
    """Paths a commit touched, and whether the commit listed them at all."""
    if not isinstance(commit, dict):
        raise MalformedPayload(f"{field} must be an object")
    paths: set[str] = set()
    listed = True
    for key in PATH_KEYS:
        values = commit.get(key)
        if values is None:
            listed = False
            continue
        if not isinstance(values, list):
            raise MalformedPayload(f"{field}.{key} must be a list")
        paths.update(validate_relpath(p, field=f"{field}.{key}[]") for p in values)
    return paths, listed


def changed_paths(commits: Iterable[Any], *, field: str = "commits") -> tuple[tuple[str, ...], bool]:
    """Union of the paths of ``commits`` (sorted) and whether every commit listed its paths."""
    union: set[str] = set()
    complete = True
    for index, commit in enumerate(commits):
        paths, listed = commit_paths(commit, field=f"{field}[{index}]")
        union |= paths
        complete = complete and listed
    return tuple(sorted(union)), complete


def git_pushed(
    *,
    repo: Any,
    ref: Any,
    before: Any,
    after: Any,
    pusher: Any,
    delivery_id: str,
    source: str,
    changed: tuple[str, ...] = (),
    clone_url: Any = "",
    forced: bool = False,
    paths_complete: bool = True,
) -> GitPushed:
    return GitPushed(
        repo=validate_git_repo(repo, field="repo"),
        ref=validate_ref(ref, field="ref"),
        before=sha_or_zero(before, field="before"),
        after=sha_or_zero(after, field="after"),
        changed_paths=tuple(validate_relpath(p, field="changed_paths[]") for p in changed),
        pusher=validate_text("" if pusher is None else pusher, field="pusher"),
        delivery_id=delivery_id,
        source=source,
        clone_url=validate_clone_url("" if clone_url is None else clone_url, field="clone_url"),
        forced=forced,
        paths_complete=paths_complete,
    )


def image_pushed(
    *, registry: Any, repository: Any, tag: Any, digest: Any, delivery_id: str, source: str
) -> ImagePushed:
    return ImagePushed(
        registry=validate_registry_host(registry, field="registry"),
        repository=validate_repository(repository, field="repository"),
        tag=validate_tag(tag, field="tag"),
        digest=validate_digest("" if digest is None else digest, field="digest"),
        delivery_id=delivery_id,
        source=source,
    )


def full_ref(name: Any, kind: Any, *, field: str = "ref") -> str:
    """``main`` + ``branch`` → ``refs/heads/main``; ``v1`` + ``tag`` → ``refs/tags/v1``."""
    if not isinstance(name, str) or not name:
        raise MalformedPayload(f"{field} must be a non-empty string")
    prefixes = {"branch": "refs/heads/", "tag": "refs/tags/"}
    kind_text = kind.lower() if isinstance(kind, str) else kind
    if kind_text not in prefixes:
        raise MalformedPayload(f"{field}: unknown ref type {kind!r} (expected branch or tag)")
    return prefixes[kind_text] + name.removeprefix(prefixes[kind_text])
