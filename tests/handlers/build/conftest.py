"""Helpers for build tests on the real stack: an app repo in the seed's monorepo shape
(``frontend/``, ``backend/``, ``docs/``) on the HTTP git server, a working clone to commit and
push from, and the matching ``RepoConfig`` with images unique to the test (so the content index
and the registry never carry over between tests or runs). Buildah shares the stack's storage,
so the busybox base is already local and the ``RUN`` layers stay cached across tests."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.stack import Stack
from handlers.build.builder import BuildahBuilder, BuildSpec, BuiltImage
from handlers.build.mirror import Mirror, Want
from handlers.build.prestart import PrestartedBud
from handlers.build.pushtool import HINT
from handlers.build.report import BuildReport
from handlers.build.run import build_push
from handlers.events import ZERO_SHA, GitPushed
from handlers.settings import BuildSettings, ImageBuildConfig, RegistryConfig, RepoConfig

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]
MANIFEST_ACCEPT = ("application/vnd.oci.image.manifest.v1+json,"
                   "application/vnd.docker.distribution.manifest.v2+json")


def git(work: Path, *args: str) -> str:
    return subprocess.run([*GIT, "-C", str(work), *args], check=True, capture_output=True, text=True).stdout.strip()


@dataclass
class CountingBuilder:
    """The real buildah builder, counting how often a build actually ran, and keeping every ``bud``
    it started before the fetch (``prestart``: only for events whose ``changed_paths`` name an image)."""

    inner: BuildahBuilder
    calls: list[str] = field(default_factory=list)
    prestarted: list[PrestartedBud] = field(default_factory=list)

    def prestarts(self, oci_metadata: str) -> bool:
        return self.inner.prestarts(oci_metadata)

    def prestart(self, spec: BuildSpec, *, log: Path) -> PrestartedBud:
        bud = self.inner.prestart(spec, log=log)
        self.prestarted.append(bud)
        return bud

    def build(self, spec: BuildSpec, *, log: Path, should_continue: Callable[[], bool],
              prestarted: PrestartedBud | None = None) -> BuiltImage:
        self.calls.append(spec.image)
        return self.inner.build(spec, log=log, should_continue=should_continue, prestarted=prestarted)


@dataclass
class AppRepo:
    stack: Stack
    work: Path
    url: str
    uid: str
    builder: CountingBuilder
    pushed: dict[str, str] = field(default_factory=dict)

    @property
    def registry(self) -> str:
        return self.stack.registry.host

    def image(self, service: str) -> str:
        return f"{self.registry}/{self.uid}/{service}"

    def write(self, files: dict[str, str]) -> None:
        for rel, text in files.items():
            path = self.work / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)

    def commit(self, files: dict[str, str], message: str = "change") -> str:
        self.write(files)
        git(self.work, "add", "-A")
        git(self.work, "commit", "-qm", message)
        return git(self.work, "rev-parse", "HEAD")

    def push(self, branch: str = "main", *, force: bool = False) -> GitPushed:
        """Push HEAD to ``branch``; the event a forge would send for it."""
        ref = f"refs/heads/{branch}"
        before = self.pushed.get(ref, ZERO_SHA)
        git(self.work, "push", "-q", *(["--force"] if force else []), "origin", f"HEAD:{ref}")
        after = git(self.work, "rev-parse", "HEAD")
        self.pushed[ref] = after
        return self.event(ref, before, after, forced=force)

    def push_tag(self, name: str, *, annotated: bool = False) -> GitPushed:
        """Tag HEAD and push it; an annotated tag's event carries the tag object's id, like forges send."""
        git(self.work, "tag", *(["-a", "-m", f"release {name}"] if annotated else []), name)
        git(self.work, "push", "-q", "origin", f"refs/tags/{name}")
        return self.event(f"refs/tags/{name}", ZERO_SHA, git(self.work, "rev-parse", name))

    def event(self, ref: str, before: str, after: str, *, forced: bool = False) -> GitPushed:
        return GitPushed(repo=f"test/{self.uid}", ref=ref, before=before, after=after, changed_paths=(),
                         pusher="t", delivery_id=f"d-{uuid.uuid4().hex[:8]}", source="gitea",
                         clone_url=self.url, forced=forced)

    def config(self, images: list[dict[str, Any]] | None = None, **repo: Any) -> RepoConfig:
        images = images if images is not None else [
            {"name": self.image(s), "context": s, "tags": ["{short_sha}", "{branch}"]} for s in ("frontend", "backend")
        ]
        return RepoConfig(name=f"app-{self.uid}", url=self.url, branches=["main", "feature"],
                          images=[ImageBuildConfig(**i) for i in images], **repo)

    def build(self, event: GitPushed, config: RepoConfig | None = None, *, timeout: int = 120,
              should_continue: Callable[[], bool] = lambda: True,
              settings: BuildSettings | None = None) -> BuildReport:
        # model_copy skips validation: the config's floor (5 s) is too slow for the timeout test
        settings = (settings or BuildSettings(parallelism=2)).model_copy(update={"timeout_seconds": timeout})
        return build_push(config or self.config(), event, settings=settings, registries=registries(self.stack),
                          state_dir=self.stack.state_dir, should_continue=should_continue, builder=self.builder)

    def manifest(self, service: str, tag: str) -> httpx.Response:
        url = f"{self.stack.registry.url}/v2/{self.uid}/{service}/manifests/{tag}"
        return httpx.get(url, headers={"Accept": MANIFEST_ACCEPT})

    def config_blob(self, service: str, manifest: dict[str, Any]) -> dict[str, Any]:
        digest = manifest["config"]["digest"]
        return httpx.get(f"{self.stack.registry.url}/v2/{self.uid}/{service}/blobs/{digest}").json()

    def keys_as_build_step(self) -> None:
        """From now on, build as without ``shipline-push`` (``build.keys_at_push: false``)."""
        self.builder = CountingBuilder(BuildahBuilder(state_dir=self.stack.state_dir, registries=registries(self.stack),
                                                      keys_at_push=False))


def mirror(app: AppRepo, want: Want | None = None) -> Mirror:
    """The app repo's build mirror, opened as a build opens it (for ``want`` alone when given)."""
    return Mirror.open(state_dir=app.stack.state_dir, name=f"app-{app.uid}", url=app.url, want=want)


def registries(stack: Stack) -> list[RegistryConfig]:
    return [RegistryConfig(host=stack.registry.host, insecure=True)]


def dockerfile(stack: Stack, run: str) -> str:
    return f"FROM {stack.base_image}\nRUN {run}\n"


@pytest.fixture
def app(stack: Stack, tmp_path: Path) -> AppRepo:
    """A fresh monorepo with one commit on main (pushed, not built yet)."""
    uid = "t" + uuid.uuid4().hex[:10]
    url = stack.git.create_repo(f"app-{uid}")
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", url, str(work)], check=True, capture_output=True)
    builder = CountingBuilder(BuildahBuilder(state_dir=stack.state_dir, registries=registries(stack)))
    assert builder.inner.push_tool is not None, f"shipline-push is missing: {HINT}"
    repo = AppRepo(stack, work, url, uid, builder)
    repo.commit({
        "frontend/Dockerfile": dockerfile(stack, "echo frontend > /service.txt"),
        "frontend/index.html": "<h1>shop</h1>\n",
        "backend/Dockerfile": dockerfile(stack, "echo backend > /service.txt"),
        "backend/app.sh": "#!/bin/sh\necho ok\n",
        "docs/README.md": "# shop\n",
    }, "seed")
    repo.push("main")
    return repo
