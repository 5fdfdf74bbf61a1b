"""The domain's settings: what a repo builds, how an environment is bumped, rendered and synced.

Plain frozen pydantic models with no I/O; ``service.config`` reads ``shipline.yaml`` into them
(and adds the settings of the edges: server, Redis, receivers, queue). Unknown keys are refused.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from handlers.secrets import SecretRef

NAME_RE = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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

    provider: Literal["github", "gitlab", "gitea"]
    token: SecretRef
    repository: str = Field(min_length=1)
    """GitHub and Gitea ``owner/name``; GitLab project id or ``group/project`` path."""
    api_url: str = ""
    """Default ``https://api.github.com`` / ``https://gitlab.com/api/v4``; Gitea has no default
    (``https://gitea.example.com/api/v1``)."""
    context: str = "shipline/build"

    @model_validator(mode="after")
    def _gitea_has_a_url(self) -> CommitStatusConfig:
        if self.provider == "gitea" and not self.api_url:
            raise ValueError("provider gitea needs api_url (https://<your gitea>/api/v1)")
        return self

    @property
    def base_url(self) -> str:
        defaults = {"github": "https://api.github.com", "gitlab": "https://gitlab.com/api/v4"}
        return (self.api_url or defaults.get(self.provider, "")).rstrip("/")


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
    poll_interval: int | None = Field(None, ge=10)
    """Seconds between ``git ls-remote`` runs over the repo's branches and release tags (the
    safety net for missed webhooks); off when unset."""


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
    files: list[str] | None = None
    """Globs (repo-relative, ``handlers.globs``) of the files whose bare-tag markers belong to this
    image. Unset: ``**/services/<name>/config/**``, ``<name>`` being the image's last path segment
    (the seed's monorepo shape). ``[]`` turns file binding off for the image."""
    poll_interval: int | None = Field(None, ge=10)
    """Seconds between listings of the image's tags in its registry (the safety net for missed
    webhooks); off when unset."""

    @field_validator("files")
    @classmethod
    def _relative_globs(cls, globs: list[str] | None) -> list[str] | None:
        for glob in globs or []:
            if not glob or glob.startswith("/") or ".." in glob.split("/"):
                raise ValueError(f"{glob!r}: must be a repo-relative glob (no '/' prefix, no '..')")
        return globs


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
    mode: Literal["plain", "kustomize", "jinja2", "kluctl"] = "plain"
    vars: list[str] = Field(default_factory=list)
    """jinja2 mode: vars files relative to the repo root, e.g. ``config/staging.yaml``."""
    target: str | None = None
    """kluctl mode: the ``.kluctl.yaml`` target to render (required when the project has targets)."""
    args: dict[str, Any] = Field(default_factory=dict)
    """kluctl mode: args over the target's own (deep-merged, like ``kluctl -a``)."""

    @model_validator(mode="after")
    def _options_fit_the_mode(self) -> RenderConfig:
        if self.mode != "kluctl" and (self.target is not None or self.args):
            raise ValueError("target and args belong to mode: kluctl")
        if self.mode != "jinja2" and self.vars:
            raise ValueError("vars belong to mode: jinja2 (mode kluctl loads the vars its deployment.yaml "
                             "names; pass values with args)")
        return self


class PullRequestSettings(Model):
    """Bumps to ``push_branch`` open (and update) one pull/merge request per branch into
    ``git.branch``; merging it is a push to the manifests branch, so the sync follows."""

    provider: Literal["github", "gitlab", "gitea"]
    repository: str = Field(min_length=1)
    """GitHub/Gitea ``owner/name``; GitLab project id or ``group/project`` path."""
    token: SecretRef
    api_url: str = ""
    """Default ``https://api.github.com`` / ``https://gitlab.com/api/v4``; Gitea: ``https://host/api/v1``."""
    auto_merge: bool = False
    """Merge it as soon as the forge allows (GitLab: merge when the pipeline succeeds)."""

    @model_validator(mode="after")
    def _gitea_needs_its_url(self) -> PullRequestSettings:
        if self.provider == "gitea" and not self.api_url:
            raise ValueError("provider gitea needs api_url (https://<host>/api/v1)")
        return self

    @property
    def base_url(self) -> str:
        default = {"github": "https://api.github.com", "gitlab": "https://gitlab.com/api/v4"}.get(self.provider, "")
        return (self.api_url or default).rstrip("/")


class DriftFlapSettings(Model):
    """The flap guard: past ``max_corrections`` drift corrections in ``window_seconds``, drift of
    the environment is only reported (and notified) until the window passes or Git changes."""

    max_corrections: int = Field(5, ge=1)
    window_seconds: int = Field(600, ge=10)


class EnvironmentConfig(Model):
    """An environment: where manifests live, how to render them, which cluster follows them."""

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
    pull_request: PullRequestSettings | None = None
    """With ``push_branch``: one pull/merge request per review branch, updated by later bumps."""
    commit_author: str = "Shipline <shipline@localhost>"
    render: RenderConfig = Field(default_factory=RenderConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    namespace: str = "default"
    prune: bool = True
    delete: bool = False
    """Remove what this environment deployed instead of syncing it: every object in its inventory
    and (kluctl mode) every object labelled with the target's discriminator, then the inventory.
    Keep the entry until its status says ``Deleted``, then remove it from the config."""
    allow_empty: bool = False
    """Allow a render with no objects to prune everything."""
    drift: Literal["correct", "report"] = "correct"
    drift_flap: DriftFlapSettings = Field(default_factory=DriftFlapSettings)
    rollback: Literal["auto", "off"] = "off"
    """``auto``: a release that leaves the environment Degraded past ``health_timeout`` is reverted
    in Git (Shipline's own bump commit only), synced, notified, and its tags held back."""
    force_conflicts: bool = False
    reconcile_interval: int = Field(300, ge=5)
    health_timeout: int = Field(180, ge=1)
    notify: list[NotifyConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _follow_needs_target(self) -> EnvironmentConfig:
        if (self.trigger == "follow") != (self.follows is not None):
            raise ValueError("trigger 'follow' and 'follows: <env>' go together")
        if self.pull_request is not None and not self.push_branch:
            raise ValueError("pull_request needs push_branch (the review branch the bumps go to)")
        return self


class JobBuildSettings(Model):
    """``build.backend: job``: each image is built by a Kubernetes Job (``handlers.build.jobs``)."""

    image: str = ""
    """An image with bash, git, buildah and tini (the dev stack builds one: ``devstack.buildjobs``)."""
    namespace: Annotated[str, Field(pattern=NAME_RE)] = "shipline-builds"
    service_account: Annotated[str, Field(pattern=NAME_RE)] = "shipline-builder"
    """The build pods' identity: no API token is mounted, so it needs no role at all."""
    registry_secret: Annotated[str, Field(pattern=NAME_RE)] | None = None
    """A ``kubernetes.io/dockerconfigjson`` Secret in ``namespace``: buildah's ``--authfile``."""
    git_secret: Annotated[str, Field(pattern=NAME_RE)] | None = None
    """A Secret with a ``.git-credentials`` key, for private repositories (never a URL with a token)."""
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    requests: dict[str, str] = Field(default_factory=lambda: {"cpu": "500m", "memory": "512Mi"})
    limits: dict[str, str] = Field(default_factory=lambda: {"cpu": "2", "memory": "2Gi"})
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, str | int]] = Field(default_factory=list)
    host_network: bool = False
    """For clusters whose registry and Git server listen on the node's loopback (the dev stack)."""
    ttl_seconds_after_finished: int = Field(900, ge=60)
    """Finished Jobs are deleted by Kubernetes after this; until then a redelivered build adopts its
    Job instead of building again (keep it above the queue's redelivery bound)."""


class BuildSettings(Model):
    timeout_seconds: int = Field(1800, ge=5)
    parallelism: int = Field(1, ge=1, le=16)
    storage_driver: Literal["auto", "overlay", "vfs"] = "auto"
    """``auto``: overlay where a test mount under the storage dir works (root, kernel overlayfs),
    else vfs, with a log line saying why (``handlers.build.storage``)."""
    oci_metadata: Literal["labels", "annotations"] = "labels"
    """Where the OCI revision/source/created keys go. ``labels``: the image config (what
    ``docker inspect``, Renovate and most scanners read); ``annotations``: the manifest. Either
    is set while pushing (``keys_at_push``)."""
    keys_at_push: bool = True
    """Set the OCI keys while pushing, with ``shipline-push`` (``handlers.build.pushtool``): no
    build step. ``false``, or that tool not found (logged): labels are one ``LABEL`` build step,
    annotations ``bud --annotation`` (a build whose every step came from the cache then gets one
    ``LABEL`` step after all, so its manifest still names its own commit)."""
    prestart: bool = True
    """Start ``buildah bud`` for the images a branch push's own paths name before the commit is
    fetched, the Dockerfile given to it through a FIFO once the checkout is moved, so buildah's
    start-up overlaps Shipline's fetch (``handlers.build.prestart``); not for annotations set by
    ``bud`` (their ``created`` key needs the commit), and a guess the commit proves wrong is
    stopped unused. ``false``: every ``bud`` starts after the fetch."""
    cache_keep: int | None = Field(10, ge=1)
    """Per configured image, how many of its newest builds stay in the local buildah storage, with
    every layer they stand on (the layer cache). Older images, and the cached steps only they
    used, are removed in the background while no build runs (``handlers.build.prune``); ``null``
    keeps everything, and buildah's cache lookup then slows down with every build."""
    log_keep_days: int | None = Field(30, ge=1)
    """Build logs under ``<state_dir>/build-logs`` older than this are deleted in the background
    (the API's copy in Redis has its own retention); ``null`` keeps them all."""
    max_retries: int = Field(3, ge=0)
    backend: Literal["local", "job"] = "local"
    """``local``: buildah in the worker; ``job``: a Kubernetes Job per image (``job:`` below)."""
    job: JobBuildSettings = Field(default_factory=JobBuildSettings)

    @model_validator(mode="after")
    def _job_backend_has_an_image(self) -> BuildSettings:
        if self.backend == "job" and not self.job.image:
            raise ValueError("backend job needs job.image (an image with bash, git, buildah and tini)")
        return self
