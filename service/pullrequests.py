"""PR mode: bumps that went to a review branch (``push_branch``) open one pull/merge request per
(environment, branch) into the manifests branch, and later bumps to that branch update it.

The title and body list every image and tag the branch carries (accumulated in Redis until the
request is merged or closed) with a link back to each release. ``auto_merge`` merges it as soon
as the forge allows, pinned to the head Shipline pushed (what was checked is what gets merged);
merging is a push to the manifests branch, so the sync follows as for any push. A forge that
cannot do it now (down, still checking mergeability) fails the bump with a ``TransientError``:
the redelivered bump finds its commit already pushed and only retries this step.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

from handlers.bump import BumpResult
from handlers.settings import EnvironmentConfig, PullRequestSettings
from service.forges.gitea import GiteaClient, PullRequest
from service.forges.github import GitHubClient
from service.forges.gitlab import GitLabClient

log = logging.getLogger("shipline.pullrequests")


class Forge(Protocol):
    def find_open_pull(self, repo: str, *, head: str, base: str) -> PullRequest | None: ...
    def create_pull(self, repo: str, *, head: str, base: str, title: str, body: str = "") -> PullRequest: ...
    def update_pull(self, repo: str, number: int, *, title: str | None = None,
                    body: str | None = None) -> PullRequest: ...
    def merge_pull(self, repo: str, number: int, *, head_sha: str | None = None,
                   delete_branch: bool = False) -> None: ...
    def close(self) -> None: ...


def forge_for(settings: PullRequestSettings) -> Forge:
    token = settings.token.resolve()
    if settings.provider == "github":
        return GitHubClient(settings.base_url, token)
    if settings.provider == "gitlab":
        return GitLabClient(settings.base_url, token)
    return GiteaClient(settings.base_url, token)


def _carried(env: str, branch: str) -> str:
    return f"shipline:pr:{env}:{branch}"


def propose(r: Any, env: EnvironmentConfig, result: BumpResult, releases: dict[str, str], *,
            release_url: str = "", ttl: int = 7 * 86400) -> PullRequest | None:
    """Open or update the request for ``result.branch`` (``releases``: image → the tag it now
    carries); merge it when ``auto_merge``. None when the bump did not go to a review branch."""
    settings = env.pull_request
    if settings is None or not result.branch or result.branch == env.git.branch:
        return None
    key = _carried(env.name, result.branch)
    if releases:
        r.hset(key, mapping={image: json.dumps({"tag": tag, "url": release_url}) for image, tag in releases.items()})
        r.expire(key, ttl)
    carried = {image: json.loads(raw) for image, raw in r.hgetall(key).items()}
    title, body = describe(env, carried)
    forge = forge_for(settings)
    try:
        pull = forge.find_open_pull(settings.repository, head=result.branch, base=env.git.branch)
        if pull is None:
            pull = forge.create_pull(settings.repository, head=result.branch, base=env.git.branch, title=title,
                                     body=body)
            log.info("pull request opened", extra={"environment": env.name, "number": pull.number})
        elif (pull.title, pull.body) != (title, body):
            pull = forge.update_pull(settings.repository, pull.number, title=title, body=body)
        if settings.auto_merge:
            forge.merge_pull(settings.repository, pull.number, head_sha=result.commit or None, delete_branch=True)
            r.delete(key)  # merged: the next bump starts a new request
            log.info("pull request merged", extra={"environment": env.name, "number": pull.number})
    finally:
        forge.close()
    return pull


def describe(env: EnvironmentConfig, carried: dict[str, dict[str, str]]) -> tuple[str, str]:
    """``Shipline: <env> ← frontend 1.2.0, backend 1.2.0`` and a body listing image, tag, release."""
    short = ", ".join(f"{image.rsplit('/', 1)[-1]} {c['tag']}" for image, c in sorted(carried.items()))
    title = f"Shipline: {env.name} ← {short}"[:250]
    lines = [f"Shipline bumps **{env.name}** (`{env.git.branch}` ← this branch):", "",
             "| image | tag | release |", "|---|---|---|"]
    for image, c in sorted(carried.items()):
        link = f"[release]({c['url']})" if c.get("url") else "–"
        lines.append(f"| `{image}` | `{c['tag']}` | {link} |")
    lines += ["", "Merging this pushes the manifests branch; Shipline syncs the environment after it."]
    return title, "\n".join(lines)
