"""The full real stack with Shipline's own receiver and worker processes (``shipline serve`` /
``shipline worker``, exactly as ``make up`` runs them) on the demo repos on Gitea (whose own push
webhooks reach the receiver, and which takes the builds' commit statuses), plus local stand-ins
for the SaaS Shipline talks to outside: GitHub's and GitLab's status APIs and webhook receivers."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client, config
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from devstack.demo import clone_argv, create_demo
from devstack.kube import KubeCluster
from devstack.stack import Stack

STANDIN_TOKEN = "standin-provider-token"


@contextmanager
def running_stack(stack: Stack, kube_cluster: KubeCluster, work_root: Path,
                  amend: Callable[[dict[str, Any]], None] | None = None) -> Iterator[dict[str, Any]]:
    """Demo repos + config (``amend`` may edit the config before start), receiver and worker up."""
    repos = create_demo(stack, kubeconfig=kube_cluster.kubeconfig)
    if amend is not None:
        data = json.loads(stack.config_path.read_text())
        amend(data)
        stack.config_path.write_text(json.dumps(data, indent=2) + "\n")
    stack.start_services()
    stack.wait_services()
    work = work_root / "shop"
    subprocess.run(clone_argv(stack, repos["app"].clone_url, work), check=True, capture_output=True)
    api = client.AppsV1Api(config.new_client_from_config(str(kube_cluster.kubeconfig)))
    token = stack.secret("api-token")
    http = httpx.Client(base_url=stack.receiver_url, headers={"Authorization": f"Bearer {token}"})
    try:
        yield {"stack": stack, "work": work, "apps": api, "http": http, "repos": repos, "token": token}
    finally:
        http.close()
        for daemon in stack.service_daemons():
            daemon.stop()


@pytest.fixture(scope="module")
def running(stack: Stack, kube_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory):
    with running_stack(stack, kube_cluster, tmp_path_factory.mktemp("e2e")) as parts:
        yield parts


class Standins:
    """One Starlette app standing in for GitHub's and GitLab's commit status APIs (each checks
    its auth header) and for webhook/Slack receivers; every call is recorded."""

    def __init__(self, token: str = STANDIN_TOKEN) -> None:
        self.token = token
        self.calls: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.app = Starlette(routes=[
            Route("/github/repos/{owner}/{repo}/statuses/{sha}", self.github, methods=["POST"]),
            Route("/gitlab/projects/{project:path}/statuses/{sha}", self.gitlab, methods=["POST"]),
            Route("/hooks/{name}", self.hook, methods=["POST"]),
        ])

    async def _record(self, request: Request, kind: str, authorized: bool) -> Response:
        body = await request.json()
        with self.lock:
            self.calls.append({"kind": kind, "path": request.url.path, "raw_path": request.scope["raw_path"].decode(),
                               "params": dict(request.path_params), "body": body, "authorized": authorized})
        return JSONResponse({"ok": True}, 201) if authorized else JSONResponse({"message": "Bad credentials"}, 401)

    async def github(self, request: Request) -> Response:
        ok = request.headers.get("authorization") == f"Bearer {self.token}"
        return await self._record(request, "github", ok)

    async def gitlab(self, request: Request) -> Response:
        return await self._record(request, "gitlab", request.headers.get("private-token") == self.token)

    async def hook(self, request: Request) -> Response:
        return await self._record(request, request.path_params["name"], True)

    def of(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [c for c in self.calls if c["kind"] == kind]
