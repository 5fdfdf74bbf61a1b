"""Which configured repo, image or environment an event concerns: only those are acted on.

``Router`` is built once from the settings and answers every question with dictionary lookups,
so a delivery costs the same with 3,000 repos as with 10. The matching rules:

- repo names compare on ``normalize_repo`` (lower case, no scheme, no ``user@``, no ``.git``, no
  trailing ``/``; ``git@host:owner/name`` → ``host/owner/name``);
- a configured name matches a name the sender reports when they are equal, or when one is a
  ``/``-separated tail of the other (``acme/shop`` matches ``git.example.com/acme/shop``);
- for repos the first configured one wins; environments are all those that match, in config order;
- images compare on ``handlers.images.normalize_image`` (Docker Hub spellings, case).
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence

from handlers.events import Event, GitPushed, ImagePushed
from handlers.images import normalize_image
from handlers.settings import EnvironmentConfig, RepoConfig


@functools.lru_cache(maxsize=4096)
def normalize_repo(name: str) -> str:
    """``https://host/Org/App.git/`` and ``org/app`` compare on their lower-cased path tail."""
    name = name.strip().lower().rstrip("/").removesuffix(".git")
    name = re.sub(r"^[a-z+]+://", "", name)
    name = re.sub(r"^[^@/]+@", "", name)  # user@ in URLs
    return name.replace(":", "/") if "://" not in name and name.count(":") == 1 and "@" in name else name


def _tails(name: str) -> list[str]:
    """``a/b/c`` → ``["b/c", "c"]``: the proper ``/``-tails of a name."""
    parts = name.split("/")
    return ["/".join(parts[i:]) for i in range(1, len(parts))]


class _NameIndex:
    """Names → the positions (config order) of the items that carry them, by the tail rule."""

    def __init__(self) -> None:
        self.exact: dict[str, set[int]] = defaultdict(set)
        self.by_tail: dict[str, set[int]] = defaultdict(set)

    def add(self, position: int, names: Iterable[str]) -> None:
        for raw in names:
            name = normalize_repo(raw)
            self.exact[name].add(position)
            for tail in _tails(name):
                self.by_tail[tail].add(position)

    def find(self, names: Iterable[str]) -> set[int]:
        found: set[int] = set()
        for raw in names:
            name = normalize_repo(raw)
            found |= self.exact.get(name, set()) | self.by_tail.get(name, set())
            for tail in _tails(name):
                found |= self.exact.get(tail, set())
        return found


class Router:
    """The lookup tables of one config: repos by name, environments by repo and by image."""

    def __init__(self, repos: Sequence[RepoConfig], environments: Sequence[EnvironmentConfig]) -> None:
        self.repos = list(repos)
        self.environments = list(environments)
        self._repos = _NameIndex()
        for i, repo in enumerate(self.repos):
            self._repos.add(i, [repo.url, *repo.match])
        self._env_repos = _NameIndex()
        self._by_image: dict[str, list[EnvironmentConfig]] = defaultdict(list)
        for i, env in enumerate(self.environments):
            self._env_repos.add(i, [env.git.url])
            for image in dict.fromkeys(normalize_image(i.image) for i in env.images):
                self._by_image[image].append(env)

    def repo_for(self, event: GitPushed) -> RepoConfig | None:
        found = self._repos.find(_names(event))
        return self.repos[min(found)] if found else None

    def envs_for_git(self, event: GitPushed) -> list[EnvironmentConfig]:
        envs = (self.environments[i] for i in sorted(self._env_repos.find(_names(event))))
        return [env for env in envs if event.ref == f"refs/heads/{env.git.branch}"]

    def envs_for_image(self, event: ImagePushed) -> list[EnvironmentConfig]:
        return list(self._by_image.get(normalize_image(event.image), ()))

    def semantic_key(self, event: Event) -> str:
        """What makes two deliveries the same work, however their senders spell it: a push names
        its repo by the configured repo it routes to (else its normalised clone URL), an image by
        its normalised name. A webhook and a poll of the same change share this key."""
        if isinstance(event, ImagePushed):
            return f"image|{normalize_image(event.image)}|{event.tag}|{event.digest}"
        repo = self.repo_for(event)
        identity = f"repo:{repo.name}" if repo else normalize_repo(event.clone_url or event.repo)
        if event.deleted:  # every deletion of a ref looks alike: only the delivery tells them apart
            return f"git|{identity}|{event.ref}|deleted|{event.delivery_id}"
        return f"git|{identity}|{event.ref}|{event.after}"

    def ignore_reason(self, event: Event) -> str | None:
        """None when some configured repo, environment or image wants this event."""
        if isinstance(event, ImagePushed):
            if self.envs_for_image(event):
                return None
            return f"image {event.image} is not configured for any environment"
        repo = self.repo_for(event)
        if repo is not None and build_reason(repo, event) is None:
            return None
        if self.envs_for_git(event):
            return None
        if repo is not None:
            return build_reason(repo, event)
        return f"repository {event.repo} is not configured"


def _names(event: GitPushed) -> list[str]:
    return [event.repo, event.clone_url] if event.clone_url else [event.repo]


def build_reason(repo: RepoConfig, event: GitPushed) -> str | None:
    """None when this push should build, else why not."""
    if event.deleted:
        return f"{event.ref} was deleted"
    if event.is_branch:
        return None if event.short_ref in repo.branches else f"branch {event.short_ref} is not built"
    if event.is_tag:
        if repo.tags and re.fullmatch(repo.tags, event.short_ref):
            return None
        return f"tag {event.short_ref} does not match the release pattern"
    return f"ref {event.ref} is neither a branch nor a tag"
