"""Which configured repo, image or environment an event concerns: only those are acted on."""

from __future__ import annotations

import re

from handlers.events import Event, GitPushed, ImagePushed
from handlers.policy import same_image
from service.config import Config, EnvironmentConfig, RepoConfig


def normalize_repo(name: str) -> str:
    """``https://host/Org/App.git/`` and ``org/app`` compare on their lower-cased path tail."""
    name = name.strip().lower().rstrip("/").removesuffix(".git")
    name = re.sub(r"^[a-z+]+://", "", name)
    name = re.sub(r"^[^@/]+@", "", name)  # user@ in URLs
    return name.replace(":", "/") if "://" not in name and name.count(":") == 1 and "@" in name else name


def _repo_matches(candidates: list[str], event: GitPushed) -> bool:
    names = {normalize_repo(c) for c in candidates}
    seen = {normalize_repo(event.repo)} | ({normalize_repo(event.clone_url)} if event.clone_url else set())
    if names & seen:
        return True
    # "owner/name" given in config matches the tail of a URL the sender reports, and vice versa
    return any(a.endswith("/" + b) or b.endswith("/" + a) for a in names for b in seen)


def repo_for(config: Config, event: GitPushed) -> RepoConfig | None:
    return next((r for r in config.repos if _repo_matches([r.url, *r.match], event)), None)


def envs_for_git(config: Config, event: GitPushed) -> list[EnvironmentConfig]:
    return [env for env in config.environments
            if _repo_matches([env.git.url], event) and event.ref == f"refs/heads/{env.git.branch}"]


def envs_for_image(config: Config, event: ImagePushed) -> list[EnvironmentConfig]:
    return [env for env in config.environments if any(same_image(i.image, event.image) for i in env.images)]


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


def ignore_reason(config: Config, event: Event) -> str | None:
    """None when some configured repo, environment or image wants this event."""
    if isinstance(event, ImagePushed):
        if envs_for_image(config, event):
            return None
        return f"image {event.image} is not configured for any environment"
    repo = repo_for(config, event)
    if repo is not None and build_reason(repo, event) is None:
        return None
    if envs_for_git(config, event):
        return None
    if repo is not None:
        return build_reason(repo, event)
    return f"repository {event.repo} is not configured"
