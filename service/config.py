"""``shipline.yaml``: one declarative, validated config, read once at start and passed down.

This module owns loading, file lookup and error formatting, and the settings of the edges
(server, Redis, receivers, queue); the domain's settings (repos, images, environments, build)
are ``handlers.settings`` models. Unknown keys and bad values fail with the key path and a hint.
Secrets are ``SecretRef``s.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from handlers.errors import ConfigError
from handlers.routing import Router
from handlers.secrets import SecretRef
from handlers.settings import (
    NAME_RE,
    BuildSettings,
    EnvironmentConfig,
    Model,
    RegistryConfig,
    RepoConfig,
)
from handlers.sources import SOURCES
from service.store import Retention

CONFIG_ENV = "SHIPLINE_CONFIG"
DEFAULT_CONFIG = Path("shipline.yaml")
DEV_STATE_DIR = Path.home() / ".local/state/shipline/dev"
"""Where ``shipline dev up`` keeps its state; the CLI finds the dev stack's config there."""


class ServerConfig(Model):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    max_body_bytes: int = Field(1_048_576, ge=1024, description="413 past this many bytes")
    api_token: SecretRef | None = None
    """Bearer token for /api/*; without it the API refuses every call."""
    public_url: str = ""
    worker_metrics_port: int = Field(9108, ge=0, le=65535)
    """The worker's own /metrics (build, bump, sync, lead time); 0 turns it off."""


class RedisConfig(Model):
    url: str = "redis://127.0.0.1:6379/0"
    dedupe_ttl_seconds: int = Field(7 * 24 * 3600, ge=60)
    event_retention: int = Field(10_000, ge=10)
    """Finished events kept in the log (an unfinished one is never trimmed)."""
    max_backlog: int = Field(250_000, ge=10)
    """Unfinished events past which the receiver answers 503 + Retry-After (the sender retries)."""
    durability: Literal["strict", "relaxed"] = "strict"
    """``strict``: the receiver refuses to start on a Redis that can lose an acknowledged write
    (AOF off, ``appendfsync`` not ``always``, an evicting ``maxmemory-policy``)."""

    @property
    def retention(self) -> Retention:
        return Retention(records=self.event_retention, max_backlog=self.max_backlog,
                         dedupe_ttl=self.dedupe_ttl_seconds)


class ReceiverConfig(Model):
    """One endpoint: ``/hooks/{source}`` (name ``default``) or ``/hooks/{source}/{name}``."""

    source: str
    """One of ``handlers.sources.SOURCES``."""
    name: Annotated[str, Field(pattern=NAME_RE)] = "default"
    secret: SecretRef | None = None
    previous_secret: SecretRef | None = None
    """Still accepted during a rotation."""
    path_token: SecretRef | None = None
    """For senders that cannot sign (Docker Hub, Quay): ``/hooks/{source}/{name}/{token}``."""
    header: str | None = None
    """Header carrying the shared token for token-based senders (default per source)."""

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        if value not in SOURCES:
            raise ValueError(f"unknown source {value!r}; use one of {sorted(SOURCES)}")
        return value


























class QueueSettings(Model):
    """dramatiq retries of every actor (defaults in ``service.broker``); tests shrink them."""

    max_retries: int = Field(5, ge=0)
    min_backoff_ms: int = Field(1_000, ge=1)
    max_backoff_ms: int = Field(300_000, ge=1)
    stuck_grace_seconds: float = Field(60.0, gt=0)
    """How long an actor may run past its time limit before its worker process exits
    (``service.stuckwatch``): the time ``TimeLimit`` gets to interrupt it first."""


class Config(Model):
    """The whole ``shipline.yaml``."""

    state_dir: Path = Path.home() / ".local/state/shipline"
    server: ServerConfig = Field(default_factory=ServerConfig)
    redis: RedisConfig = Field(default_factory=RedisConfig)
    receivers: list[ReceiverConfig] = Field(default_factory=list)
    registries: list[RegistryConfig] = Field(default_factory=list)
    repos: list[RepoConfig] = Field(default_factory=list)
    environments: list[EnvironmentConfig] = Field(default_factory=list)
    build: BuildSettings = Field(default_factory=BuildSettings)
    queue: QueueSettings = Field(default_factory=QueueSettings)

    @model_validator(mode="after")
    def _cross_refs(self) -> Config:
        _unique("receivers", [(r.source, r.name) for r in self.receivers])
        _unique("repos", [r.name for r in self.repos])
        env_names = [e.name for e in self.environments]
        _unique("environments", env_names)
        for env in self.environments:
            if env.follows is not None and env.follows not in env_names:
                raise ValueError(f"environment {env.name!r} follows unknown {env.follows!r}")
        return self

    @cached_property
    def router(self) -> Router:
        """Routing tables, built once per loaded config (see ``handlers.routing``)."""
        return Router(self.repos, self.environments)

    def receiver(self, source: str, name: str = "default") -> ReceiverConfig | None:
        return next((r for r in self.receivers if (r.source, r.name) == (source, name)), None)

    def environment(self, name: str) -> EnvironmentConfig:
        for env in self.environments:
            if env.name == name:
                return env
        raise ConfigError(f"no environment named {name!r}; configured: {[e.name for e in self.environments]}")

    def registry(self, host: str) -> RegistryConfig | None:
        return next((r for r in self.registries if r.host == host), None)


def _unique(what: str, keys: list[Any]) -> None:
    seen = set()
    for key in keys:
        if key in seen:
            raise ValueError(f"duplicate entry in {what}: {key!r}")
        seen.add(key)


def config_path(explicit: str | Path | None = None) -> Path:
    return Path(explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def load_config(path: str | Path | None = None) -> Config:
    """Read and validate the config; every problem is one ``ConfigError`` with key paths."""
    from handlers.yamlsafe import load_yaml_text

    resolved = config_path(path)
    try:
        text = resolved.read_text()
    except OSError as exc:
        raise ConfigError(
            f"cannot read config {resolved}: {exc.strerror} (set --config or {CONFIG_ENV})"
        ) from exc
    data = load_yaml_text(text, origin=str(resolved)) or {}
    return parse_config(data, origin=str(resolved))


def parse_config(data: Any, *, origin: str = "<config>") -> Config:
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: the top level must be a mapping")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{origin}: invalid config\n{format_validation_error(exc)}") from None


def format_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "(top level)"
        hint = err["msg"]
        if err["type"] == "extra_forbidden":
            hint = "unknown key (check spelling; see README 'Configuration')"
        lines.append(f"  {path}: {hint}")
    return "\n".join(lines)
