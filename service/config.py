"""``shipline.yaml``: one declarative, validated config, read once at start and passed down.

Unknown keys and bad values fail with the key path and a hint. Secrets are ``SecretRef``s.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from handlers.errors import ConfigError
from service.secrets import SecretRef

CONFIG_ENV = "SHIPLINE_CONFIG"
DEFAULT_CONFIG = Path("shipline.yaml")
SOURCES = (
    "github", "gitlab", "gitea", "forgejo", "bitbucket", "registry", "dockerhub", "harbor",
    "quay", "generic", "acr", "ecr", "jfrog",
)
NAME_RE = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    event_retention: int = Field(10_000, ge=10, description="events kept in the log")


class ReceiverConfig(Model):
    """One endpoint: ``/hooks/{source}`` (name ``default``) or ``/hooks/{source}/{name}``."""

    source: Literal[
        "github", "gitlab", "gitea", "forgejo", "bitbucket", "registry", "dockerhub", "harbor",
        "quay", "generic", "acr", "ecr", "jfrog",
    ]
    name: Annotated[str, Field(pattern=NAME_RE)] = "default"
    secret: SecretRef | None = None
    previous_secret: SecretRef | None = None
    """Still accepted during a rotation."""
    path_token: SecretRef | None = None
    """For senders that cannot sign (Docker Hub, Quay): ``/hooks/{source}/{name}/{token}``."""
    header: str | None = None
    """Header carrying the shared token for token-based senders (default per source)."""


class RegistryConfig(Model):
    host: str
    insecure: bool = False
    username: str | None = None
    password: SecretRef | None = None


class NotifyConfig(Model):
    """Where an environment reports a release: ``webhook`` (generic JSON) or ``slack``."""

    kind: Literal["webhook", "slack"]
    url: SecretRef
    """A secret: a Slack incoming-webhook URL grants posting to the channel."""
    on: list[Literal["success", "failure"]] = Field(default_factory=lambda: ["success", "failure"])


class CommitStatusConfig(Model):
    """Commit statuses for a repo's builds: ``pending`` at start, then ``success``/``failure``."""

    provider: Literal["github", "gitlab"]
    token: SecretRef
    repository: str = Field(min_length=1)
    """GitHub ``owner/name``; GitLab project id or ``group/project`` path."""
    api_url: str = ""
    """Default ``https://api.github.com`` / ``https://gitlab.com/api/v4``."""
    context: str = "shipline/build"

    @property
    def base_url(self) -> str:
        default = "https://api.github.com" if self.provider == "github" else "https://gitlab.com/api/v4"
        return (self.api_url or default).rstrip("/")


class ImageBuildConfig(Model):
    name: str
    """Full image name without tag: ``registry/repository``."""
    context: str = "."
    dockerfile: str | None = None
    """Relative to the repo root; default ``<context>/Dockerfile``."""
    build_args: dict[str, str] = Field(default_factory=dict)
    target: str | None = None
    paths: list[str] = Field(default_factory=list)
    """Globs that trigger a build; default: everything under the context."""
    tags: list[str] = Field(default_factory=lambda: ["{describe}"])

    @field_validator("context", "dockerfile")
    @classmethod
    def _relative(cls, value: str | None) -> str | None:
        if value is not None and (value.startswith("/") or ".." in Path(value).parts):
            raise ValueError("must be a path inside the repository (no '/' prefix, no '..')")
        return value

    @field_validator("tags")
    @classmethod
    def _known_placeholders(cls, tags: list[str]) -> list[str]:
        allowed = {"short_sha", "sha", "branch", "describe", "tag"}
        for tag in tags:
            for name in re.findall(r"{(\w*)}", tag):
                if name not in allowed:
                    raise ValueError(f"unknown placeholder {{{name}}}; use one of {sorted(allowed)}")
        return tags


class RepoConfig(Model):
    """An application repository whose pushes build images."""

    name: Annotated[str, Field(pattern=NAME_RE)]
    url: str
    """Clone URL Shipline fetches from."""
    match: list[str] = Field(default_factory=list)
    """Names senders use for it (``owner/name``, clone URLs); the ``url`` always matches."""
    branches: list[str] = Field(default_factory=lambda: ["main"])
    tags: str | None = r"^\d+\.\d+\.\d+$"
    """Regex for tag pushes that build (release tags); null disables tag builds."""
    images: list[ImageBuildConfig] = Field(default_factory=list)
    status: CommitStatusConfig | None = None
    """Commit statuses on the build's commit, when a provider token is configured."""


class PolicyConfig(Model):
    """How an environment picks a tag for an image (Flux ImagePolicy model)."""

    semver: str | None = None
    prereleases: bool = False
    regex: str | None = None
    extract: str | None = None
    order: Literal["numerical", "alphabetical"] = "alphabetical"
    pin: str | None = None
    digest: bool = False
    """Also pin ``@sha256:...`` where a marker asks for it."""
    allow_downgrade: bool = False

    @model_validator(mode="after")
    def _one_kind(self) -> PolicyConfig:
        kinds = [k for k in ("semver", "regex", "pin") if getattr(self, k) is not None]
        if len(kinds) > 1:
            raise ValueError(f"choose one of semver, regex or pin (got {kinds})")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"regex does not compile: {exc}") from exc
        return self


class EnvImageConfig(Model):
    image: str
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    policy_name: str | None = None
    """Flux setter name (``ns:name``) used in ``# {"$imagepolicy": ...}`` markers."""


class GitLocation(Model):
    url: str
    branch: str = "main"
    path: str = "."

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        if value.startswith("/") or ".." in Path(value).parts:
            raise ValueError("must be a path inside the repository (no '/' prefix, no '..')")
        return value


class ClusterConfig(Model):
    kubeconfig: Path | None = None
    context: str | None = None
    in_cluster: bool = False


class RenderConfig(Model):
    mode: Literal["plain", "kustomize", "jinja2"] = "plain"
    vars: list[str] = Field(default_factory=list)
    """jinja2 mode: vars files relative to the repo root, e.g. ``config/staging.yaml``."""


class EnvironmentConfig(Model):
    """A target: where manifests live, how to render them, which cluster follows them."""

    name: Annotated[str, Field(pattern=NAME_RE)]
    git: GitLocation
    markers: list[str] = Field(default_factory=list)
    """Seed-style trailing comment markers to bump, e.g. ``STAGING_IMAGE_TAG``."""
    trigger: Literal["branch", "release", "follow", "manual"] = "branch"
    """Which builds reach it: a main-branch push, a release tag, another env, or only promote."""
    follows: str | None = None
    images: list[EnvImageConfig] = Field(default_factory=list)
    push_branch: str | None = None
    """When set (template, ``{env}``/``{image}``/``{tag}``), bumps go to a review branch."""
    commit_author: str = "Shipline <shipline@localhost>"
    render: RenderConfig = Field(default_factory=RenderConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    namespace: str = "default"
    prune: bool = True
    allow_empty: bool = False
    """Allow a render with no objects to prune everything."""
    drift: Literal["correct", "report"] = "correct"
    force_conflicts: bool = False
    reconcile_interval: int = Field(300, ge=5)
    health_timeout: int = Field(180, ge=1)
    notify: list[NotifyConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _follow_needs_target(self) -> EnvironmentConfig:
        if (self.trigger == "follow") != (self.follows is not None):
            raise ValueError("trigger 'follow' and 'follows: <env>' go together")
        return self


class BuildSettings(Model):
    timeout_seconds: int = Field(1800, ge=5)
    parallelism: int = Field(1, ge=1, le=16)
    storage_driver: Literal["vfs", "overlay"] = "vfs"
    max_retries: int = Field(3, ge=0)


class QueueSettings(Model):
    """dramatiq retries of every actor (defaults in ``service.broker``); tests shrink them."""

    max_retries: int = Field(5, ge=0)
    min_backoff_ms: int = Field(1_000, ge=1)
    max_backoff_ms: int = Field(300_000, ge=1)


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
