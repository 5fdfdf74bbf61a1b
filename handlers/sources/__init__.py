"""Webhook senders: one module per sender behind ``handlers.sources.base.Source``.

``get_source(name)`` is what the HTTP edge uses; an unknown name is ``Rejected(status=404)``.
Adding a sender = one module + one entry in ``SOURCES`` + one test file.
"""

from __future__ import annotations

from handlers.errors import Rejected
from handlers.sources.acr import AcrSource
from handlers.sources.base import PATH_TOKEN_HEADER, Headers, Parsed, Secrets, Source
from handlers.sources.bitbucket import BitbucketSource
from handlers.sources.dockerhub import DockerHubSource
from handlers.sources.ecr import EcrSource
from handlers.sources.generic import GenericSource
from handlers.sources.gitea import FORGEJO, GITEA
from handlers.sources.github import GitHubSource
from handlers.sources.gitlab import GitLabSource
from handlers.sources.harbor import HarborSource
from handlers.sources.jfrog import JFrogSource
from handlers.sources.quay import QuaySource
from handlers.sources.registry import RegistrySource

_ALL: tuple[Source, ...] = (
    GitHubSource(), GitLabSource(), GITEA, FORGEJO, BitbucketSource(), RegistrySource(),
    DockerHubSource(), HarborSource(), QuaySource(), GenericSource(), AcrSource(), EcrSource(),
    JFrogSource(),
)
SOURCES: dict[str, Source] = {source.name: source for source in _ALL}


def get_source(name: str) -> Source:
    """The source registered as ``name``; ``Rejected(status=404)`` when there is none."""
    source = SOURCES.get(name)
    if source is None:
        raise Rejected(f"unknown webhook source {name!r}", status=404)
    return source


__all__ = ["PATH_TOKEN_HEADER", "SOURCES", "Headers", "Parsed", "Secrets", "Source", "get_source"]
