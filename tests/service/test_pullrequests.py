"""PR mode: bumps to a review branch open one pull request per (environment, branch) and update
it; auto-merge lands the change on the manifests branch. Against the stack's real Gitea, and
against local stand-ins for GitHub's and GitLab's APIs that check every request."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from devstack.process import free_port, wait_until
from devstack.stack import Stack
from handlers.bump import BumpResult
from handlers.events import ImagePushed, event_to_dict
from service.config import parse_config
from service.forges.gitea import GiteaClient
from service.pipeline import Pipeline
from service.pullrequests import propose
from service.store import EventRecord, EventStore, new_event_id
from tests.fixtures_stack import ServerThread

pytestmark = pytest.mark.stack
GIT = ["git", "-c", "user.name=Dev", "-c", "user.email=dev@example.com"]
IMAGE = "registry.example.com/shop/frontend"


def image_event(store: EventStore, tag: str) -> str:
    event = ImagePushed(registry="registry.example.com", repository="shop/frontend", tag=tag, digest="",
                        delivery_id="", source="registry")
    rec = EventRecord(id=new_event_id(), source="registry", receiver="default", kind=event.kind,
                      event=event_to_dict(event))
    store.save(rec)
    return rec.id


def test_bumps_to_a_review_branch_open_then_update_one_pull_request_and_auto_merge_lands_it(
        stack: Stack, redis_client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in stack.gitea.git_env().items():
        monkeypatch.setenv(key, value)
    repo = stack.gitea.create_repo(f"prs-{uuid.uuid4().hex[:8]}")
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", repo.clone_url, str(work)], check=True, capture_output=True, env=os.environ)
    (work / "deploy").mkdir()
    (work / "deploy" / "values.yaml").write_text("frontend:\n  tag: 1.0.0 # STAGING_IMAGE_TAG\n")
    for args in (["add", "-A"], ["commit", "-qm", "manifests"], ["push", "-q", "origin", "HEAD:main"]):
        subprocess.run([*GIT, "-C", str(work), *args], check=True, capture_output=True, env=os.environ)

    def config(auto_merge: bool):  # noqa: ANN202
        return parse_config({"state_dir": str(tmp_path / "s"), "redis": {"url": stack.redis.url}, "environments": [{
            "name": "staging", "git": {"url": repo.clone_url, "path": "deploy"}, "markers": ["STAGING_IMAGE_TAG"],
            "images": [{"image": IMAGE}], "push_branch": "shipline/{env}",
            "pull_request": {"provider": "gitea", "repository": repo.full_name, "api_url": stack.gitea.api_url,
                             "token": {"file": str(stack.gitea.token_file)}, "auto_merge": auto_merge}}]})

    store = EventStore(redis_client)
    pipeline = Pipeline(config(False), store, lambda *msg: None)
    forge = GiteaClient(stack.gitea.api_url, stack.gitea.token)
    for tag in ("1.1.0", "1.2.0"):
        redis_client.sadd("shipline:bump:pending:staging", image_event(store, tag))
        wait_until(lambda: _bumped(pipeline), timeout=30, what="bump and pull request (Gitea registers the branch)")
    (pull,) = forge.list_pulls(repo.full_name)
    assert pull.head == "shipline/staging" and pull.base == "main"
    assert pull.title == "Shipline: staging ← frontend 1.2.0", "one request, updated by the later bump"
    assert f"`{IMAGE}` | `1.2.0`" in pull.body

    merging = Pipeline(config(True), store, lambda *msg: None)
    redis_client.sadd("shipline:bump:pending:staging", image_event(store, "1.3.0"))
    wait_until(lambda: _bumped(merging), timeout=60, what="bump, update and merge")
    assert forge.list_pulls(repo.full_name, state="open") == []
    main = subprocess.run(["git", "ls-remote", repo.clone_url, "refs/heads/main"], capture_output=True, text=True,
                          env=os.environ).stdout.split()[0]
    subprocess.run([*GIT, "-C", str(work), "fetch", "-q", "origin", main], check=True, capture_output=True,
                   env=os.environ)
    shown = subprocess.run(["git", "-C", str(work), "show", f"{main}:deploy/values.yaml"], capture_output=True,
                           text=True, check=True).stdout
    assert shown == "frontend:\n  tag: 1.3.0 # STAGING_IMAGE_TAG\n", "merged: the manifests branch has the bump"
    forge.close()


def _bumped(pipeline: Pipeline) -> bool:
    from handlers.errors import TransientError

    try:
        pipeline.bump("staging")
    except TransientError:
        return False  # Gitea still registering the pushed branch or checking mergeability: retried
    return True


class ForgeStandin:
    """GitHub's and GitLab's pull/merge-request endpoints: each call checked and recorded."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.calls: list[tuple[str, str, Any]] = []
        self.open: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.app = Starlette(routes=[
            Route("/gh/repos/{owner}/{repo}/pulls", self.gh_pulls, methods=["GET", "POST"]),
            Route("/gh/repos/{owner}/{repo}/pulls/{n:int}", self.gh_pull, methods=["GET", "PATCH"]),
            Route("/gh/repos/{owner}/{repo}/pulls/{n:int}/merge", self.merged, methods=["PUT"]),
            Route("/gh/repos/{owner}/{repo}/git/refs/heads/{branch:path}", self.deleted, methods=["DELETE"]),
            Route("/gl/projects/{project:path}/merge_requests", self.gl_mrs, methods=["GET", "POST"]),
            Route("/gl/projects/{project:path}/merge_requests/{n:int}", self.gl_mr, methods=["PUT"]),
            Route("/gl/projects/{project:path}/merge_requests/{n:int}/merge", self.merged, methods=["PUT"]),
        ])

    async def _seen(self, request: Request) -> Any:
        body = await request.body()
        with self.lock:
            self.calls.append((request.method, request.scope["raw_path"].decode(), json.loads(body) if body else None))
        return json.loads(body) if body else None

    def _authorized(self, request: Request) -> bool:
        return (request.headers.get("authorization") == f"Bearer {self.token}"
                or request.headers.get("private-token") == self.token)

    async def gh_pulls(self, request: Request) -> Response:
        body = await self._seen(request)
        if not self._authorized(request):
            return JSONResponse({"message": "Bad credentials"}, 401)
        if request.method == "GET":
            return JSONResponse([p for p in self.open.values() if f"{request.path_params['owner']}:{p['head']['ref']}"
                                 == request.query_params["head"]])
        pull = {"number": 7, "title": body["title"], "body": body["body"], "state": "open",
                "head": {"ref": body["head"], "sha": "a" * 40}, "base": {"ref": body["base"]},
                "html_url": "https://github.example/acme/deploy/pull/7"}
        self.open["7"] = pull
        return JSONResponse(pull, 201)

    async def gh_pull(self, request: Request) -> Response:
        body = await self._seen(request)
        pull = self.open[str(request.path_params["n"])]
        if request.method == "PATCH":
            pull.update(body)
        return JSONResponse(pull)

    async def gl_mrs(self, request: Request) -> Response:
        body = await self._seen(request)
        if not self._authorized(request):
            return JSONResponse({"message": "401 Unauthorized"}, 401)
        if request.method == "GET":
            return JSONResponse([m for m in self.open.values()
                                 if m["source_branch"] == request.query_params["source_branch"]])
        mr = {"iid": 3, "title": body["title"], "description": body["description"], "state": "opened",
              "source_branch": body["source_branch"], "target_branch": body["target_branch"], "sha": "b" * 40,
              "web_url": "https://gitlab.example/acme/deploy/-/merge_requests/3"}
        self.open["3"] = mr
        return JSONResponse(mr, 201)

    async def gl_mr(self, request: Request) -> Response:
        body = await self._seen(request)
        mr = self.open[str(request.path_params["n"])]
        mr.update(body)
        return JSONResponse(mr)

    async def merged(self, request: Request) -> Response:
        await self._seen(request)
        return JSONResponse({"merged": True})

    async def deleted(self, request: Request) -> Response:
        await self._seen(request)
        return Response(status_code=204)


@pytest.mark.parametrize("provider", ["github", "gitlab"])
def test_the_github_and_gitlab_requests_are_the_documented_ones(provider: str, redis_client, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("forge-token")
    standin = ForgeStandin("forge-token")
    port = free_port()
    repository = "acme/deploy" if provider == "github" else "acme/apps/deploy"
    env = parse_config({"environments": [{
        "name": "prod", "git": {"url": "http://127.0.0.1:1/deploy.git"}, "push_branch": "shipline/{env}",
        "pull_request": {"provider": provider, "repository": repository, "auto_merge": True,
                         "api_url": f"http://127.0.0.1:{port}/{'gh' if provider == 'github' else 'gl'}",
                         "token": {"file": str(token)}}}]}).environment("prod")
    result = BumpResult("c" * 40, (), (), branch="shipline/prod")
    with ServerThread(standin.app, port):
        first = propose(redis_client, env, result, {IMAGE: "2.0.0"}, release_url="https://s.example/#event=e1")
        assert first is not None and first.head == "shipline/prod" and first.base == "main"
        propose(redis_client, env, result, {IMAGE: "2.1.0"})  # auto-merged above: a fresh request
    methods = [(m, p.split("?")[0]) for m, p, _ in standin.calls]
    if provider == "github":
        assert methods[:4] == [("GET", "/gh/repos/acme/deploy/pulls"), ("POST", "/gh/repos/acme/deploy/pulls"),
                               ("GET", "/gh/repos/acme/deploy/pulls/7"), ("PUT", "/gh/repos/acme/deploy/pulls/7/merge")]
        assert ("DELETE", "/gh/repos/acme/deploy/git/refs/heads/shipline/prod") in methods
        created = standin.calls[1][2]
        assert created["head"] == "shipline/prod" and created["base"] == "main"
        assert created["title"] == "Shipline: prod ← frontend 2.0.0" and "#event=e1" in created["body"]
        assert standin.calls[3][2] == {"merge_method": "merge", "sha": "c" * 40}
    else:
        assert methods[:3] == [("GET", "/gl/projects/acme%2Fapps%2Fdeploy/merge_requests"),
                               ("POST", "/gl/projects/acme%2Fapps%2Fdeploy/merge_requests"),
                               ("PUT", "/gl/projects/acme%2Fapps%2Fdeploy/merge_requests/3/merge")]
        assert standin.calls[1][2]["source_branch"] == "shipline/prod"
        assert standin.calls[2][2] == {"merge_when_pipeline_succeeds": True, "should_remove_source_branch": True,
                                       "sha": "c" * 40}


def test_a_bump_on_the_manifests_branch_itself_opens_nothing(redis_client, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t")
    env = parse_config({"environments": [{
        "name": "prod", "git": {"url": "http://127.0.0.1:1/deploy.git"}, "push_branch": "main",
        "pull_request": {"provider": "github", "repository": "acme/deploy", "token": {"file": str(token)}}}]}
    ).environment("prod")
    assert propose(redis_client, env, BumpResult("c" * 40, (), (), branch="main"), {IMAGE: "1"}) is None


def test_pull_request_without_a_review_branch_is_a_config_error() -> None:
    from handlers.errors import ConfigError

    with pytest.raises(ConfigError, match="pull_request needs push_branch"):
        parse_config({"environments": [{"name": "prod", "git": {"url": "http://x/y.git"},
                                        "pull_request": {"provider": "github", "repository": "a/b",
                                                         "token": {"env": "T"}}}]})
