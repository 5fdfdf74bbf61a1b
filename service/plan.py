"""``shipline config check``: say, in plain lines, what the config makes Shipline do."""

from __future__ import annotations

from collections.abc import Iterator

from handlers.sync.render import describe as describe_render
from service.config import Config


def describe(config: Config) -> Iterator[str]:
    yield f"config OK: {len(config.receivers)} receivers, {len(config.repos)} repos, " \
          f"{len(config.environments)} environments"
    for r in config.receivers:
        path = f"/hooks/{r.source}" + ("" if r.name == "default" else f"/{r.name}")
        secret = r.secret.describe() if r.secret else (r.path_token.describe() if r.path_token else "NONE")
        yield f"receiver {path}: verified with {secret}" + (" (refuses all)" if secret == "NONE" else "")
    for repo in config.repos:
        yield f"repo {repo.name} ({repo.url}): builds on branches {repo.branches}, tags /{repo.tags}/"
        for image in repo.images:
            paths = image.paths or [f"{image.context.rstrip('/')}/**"]
            yield f"  image {image.name}: context {image.context}, on changes to {paths}, tags {image.tags}"
    for env in config.environments:
        yield f"environment {env.name}: {env.git.url}@{env.git.branch}:{env.git.path} " \
              f"render={describe_render(env)} prune={env.prune} drift={env.drift} trigger={env.trigger}"
        for image in env.images:
            yield f"  follows image {image.image} with policy {image.policy.model_dump(exclude_defaults=True)}"
