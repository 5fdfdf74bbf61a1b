"""A Shipline installation for fault scenarios: its own Redis (AOF, fsync always), its own
receiver and worker *processes* (``shipline serve`` / ``shipline worker`` as ``Daemon``s, killed
with ``kill -9`` of their process group), an app repo and a manifests repo on the session's git
server, images in the session's registry and an environment synced into the session's cluster.

Everything a scenario counts is read from the real parts: event records in Redis, commits with a
``Shipline-Event`` trailer in the bare manifests repo, manifest revisions in the registry's storage.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from devstack.demo import TEMPLATE
from devstack.kube import KubeCluster
from devstack.process import Daemon, free_port, port_open, wait_until
from devstack.redis import RedisServer
from devstack.stack import Stack
from service.broker import NAMESPACE
from service.store import EventRecord, EventStore

GIT = ["git", "-c", "user.name=Dev", "-c", "user.email=dev@example.com"]
REPO_ROOT = Path(__file__).resolve().parents[2]
QUEUE = {"max_retries": 6, "min_backoff_ms": 500, "max_backoff_ms": 3000}
"""Small retries: a failing job reaches the dead-letter set in ~15 s instead of ~10 min."""
NAMESPACE_YAML = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"
FLEET = 50
"""Images of the ``fleet`` environment: one vars file in the manifests branch ``stg`` uses too."""
FLEET_TEMPLATE = """apiVersion: v1
kind: ConfigMap
metadata:
  name: fleet
data:
{% for name, image in images.items() %}  {{ name }}: "{{ image.version }}"
{% endfor %}"""
HOLD_HOOK = """#!/bin/sh
# chaos: hold every push while {hold} exists, then refuse it while {reject} exists
[ -e {hold} ] && touch {waiting}
while [ -e {hold} ]; do sleep 0.1; done
if [ -e {reject} ]; then echo refused >> {rejections}; echo "chaos: pushes refused for now" >&2; exit 1; fi
exit 0
"""


def git(work: Path, *args: str) -> str:
    return subprocess.run([*GIT, "-C", str(work), *args], check=True, capture_output=True, text=True).stdout


@dataclass
class World:
    stack: Stack
    cluster: KubeCluster
    root: Path
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.root = self.root.resolve()
        self.run_dir = self.root / "run"
        self.redis = RedisServer(self.root, free_port())
        self.app_name, self.deploy_name = f"chaos-app-{self.suffix}", f"chaos-deploy-{self.suffix}"
        self.image = f"{self.stack.registry.host}/chaos{self.suffix}/web"
        self.namespace = f"chaos-{self.suffix}"
        self.fleet_images = [f"{self.stack.registry.host}/fleet{self.suffix}/img{i:02d}" for i in range(FLEET)]
        self.hold = self.root / "hold-pushes"
        self.reject = self.root / "reject-pushes"
        self.waiting = self.root / "push-waiting"
        self.rejections = self.root / "push-rejections"

    # -- set up --------------------------------------------------------------------------
    def secret_file(self, name: str) -> Path:
        path = self.root / "secrets" / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(32))
        return path

    def secret(self, name: str) -> str:
        return self.secret_file(name).read_text().strip()

    def secret_values(self) -> dict[str, str]:
        return {p.name: p.read_text().strip() for p in (self.root / "secrets").iterdir()}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def deploy_bare(self) -> Path:
        return self.stack.git.root / f"{self.deploy_name}.git"

    def create(self) -> None:
        self.redis.start()
        hook = f"{self.url}/hooks/gitea"
        self.app_url = self.stack.git.create_repo(self.app_name, notify_url=hook,
                                                  secret_file=self.secret_file("webhook-secret"))
        self.deploy_url = self.stack.git.create_repo(self.deploy_name)
        self._seed(self.app_url, self.root / "app", {
            "web/Dockerfile": (f"FROM {self.stack.base_image}\nCOPY . /srv/\n"
                               "RUN sleep $(cat /srv/slow) && echo built > /srv/built.txt\n"
                               'CMD ["httpd", "-f", "-p", "8080", "-h", "/srv"]\n'),
            "web/slow": "0\n", "web/index.html": "<h1>web</h1>\n"})
        self._seed(self.deploy_url, self.root / "deploy", {
            "config/stg.yaml": (f"environment: stg\nreplicas: 1\nimages:\n  web:\n"
                                f"    repository: {self.image}\n    version: 0.0.0 # STG_IMAGE_TAG\n"),
            "templates/web.yaml": TEMPLATE.format(name="web"),
            "templates/namespace.yaml": NAMESPACE_YAML.format(name=self.namespace),
            "fleet/vars.yaml": "images:\n" + "".join(f"  img{i:02d}:\n    version: 1.0.0 # FLEET_IMAGE_TAG\n"
                                                     for i in range(FLEET)),
            "fleet/templates/fleet.yaml": FLEET_TEMPLATE,
            "fleet/templates/namespace.yaml": NAMESPACE_YAML.format(name=f"{self.namespace}-fleet")})
        hooks = self.deploy_bare / "hooks" / "pre-receive"
        hooks.write_text(HOLD_HOOK.format(hold=self.hold, reject=self.reject, waiting=self.waiting,
                                        rejections=self.rejections))
        hooks.chmod(0o755)
        self.write_config()

    def _seed(self, url: str, work: Path, files: dict[str, str]) -> None:
        subprocess.run(["git", "clone", "-q", url, str(work)], check=True, capture_output=True)
        for rel, text in files.items():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            (work / rel).write_text(text)
        git(work, "add", "-A")
        git(work, "commit", "-qm", "seed")
        git(work, "push", "-q", "origin", "HEAD:main")

    def config(self) -> dict[str, Any]:
        return {
            "state_dir": str(self.root / "shipline"),
            "server": {"host": "127.0.0.1", "port": self.port,
                       "api_token": {"file": str(self.secret_file("api-token"))}},
            "redis": {"url": self.redis.url},
            "receivers": [
                {"source": "gitea", "secret": {"file": str(self.secret_file("webhook-secret"))}},
                {"source": "registry", "secret": {"file": str(self.secret_file("registry-token"))}},
            ],
            "registries": [{"host": self.stack.registry.host, "insecure": True, "username": "chaos",
                            "password": {"file": str(self.secret_file("registry-password"))}}],
            "repos": [
                {"name": "app", "url": self.app_url, "match": [f"local/{self.app_name}"], "branches": ["main"],
                 "images": [{"name": self.image, "context": "web", "tags": ["{describe}"]}]},
                {"name": "broken", "url": f"http://127.0.0.1:{free_port()}/gone.git", "match": ["local/broken"],
                 "branches": ["main"], "images": [{"name": f"{self.stack.registry.host}/chaos/broken"}]},
            ],
            "environments": [{
                "name": "stg", "git": {"url": self.deploy_url, "branch": "main", "path": "templates"},
                "markers": ["STG_IMAGE_TAG"],
                "images": [{"image": self.image, "policy": {"semver": ">=0.0.0", "prereleases": True}}],
                "render": {"mode": "jinja2", "vars": ["config/stg.yaml"]},
                "cluster": {"kubeconfig": str(self.cluster.kubeconfig)}, "namespace": self.namespace,
                "reconcile_interval": 3600, "health_timeout": 60,
            }, {
                "name": "fleet", "git": {"url": self.deploy_url, "branch": "main", "path": "fleet/templates"},
                "markers": ["FLEET_IMAGE_TAG"],
                "images": [{"image": i, "policy": {"semver": ">=1.0.0"}} for i in self.fleet_images],
                "render": {"mode": "jinja2", "vars": ["fleet/vars.yaml"]},
                "cluster": {"kubeconfig": str(self.cluster.kubeconfig)}, "namespace": f"{self.namespace}-fleet",
                "reconcile_interval": 3600, "health_timeout": 30,
            }],
            "build": {"timeout_seconds": 300},
            "queue": QUEUE,
        }

    def write_config(self) -> Path:
        path = self.root / "shipline.yaml"
        path.write_text(json.dumps(self.config(), indent=2))
        return path

    # -- processes -----------------------------------------------------------------------
    def daemon(self, name: str) -> Daemon:
        return Daemon(name, self.run_dir)

    def _env(self) -> dict[str, str]:
        return {"SHIPLINE_CONFIG": str(self.root / "shipline.yaml"), "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": str(REPO_ROOT)}

    def start_serve(self) -> Daemon:
        serve = self.daemon("serve")
        serve.start([sys.executable, "-m", "service.cli", "serve"], env=self._env(), cwd=REPO_ROOT)
        wait_until(lambda: port_open(self.port), timeout=30, what="shipline serve", log=serve.log_file)
        return serve

    def start_worker(self, name: str = "worker", threads: int = 4) -> Daemon:
        worker = self.daemon(name)
        worker.start([sys.executable, "-m", "service.cli", "worker", "--threads", str(threads)],
                     env=self._env(), cwd=REPO_ROOT)
        return worker

    def stop(self) -> None:
        for name in ("serve", "worker", "worker2"):
            self.daemon(name).stop()
        self.hold.unlink(missing_ok=True)
        self.reject.unlink(missing_ok=True)
        self.redis.stop()

    def worker_pids(self, name: str = "worker") -> set[int]:
        """The worker's processes (the dramatiq parent and its forks), for a liveness check."""
        pid = self.daemon(name).pid()
        if pid is None:
            return set()
        out = subprocess.run(["pgrep", "-g", str(pid)], capture_output=True, text=True).stdout
        return {int(p) for p in out.split()}

    def wait_worker_ready(self, name: str = "worker", timeout: float = 30) -> None:
        """Until this worker's broker has a heartbeat newer than its start."""
        started = time.time() * 1000
        wait_until(lambda: any(score >= started for _, score in self.heartbeats()), timeout=timeout,
                   what=f"{name} polling", log=self.daemon(name).log_file)

    def unacked(self, queue: str) -> dict[str, set[str]]:
        """Messages fetched but not acked, per worker ack set (``__acks__.<broker id>.<queue>``)."""
        keys = self.r.keys(f"{NAMESPACE}:__acks__.*.{queue}")
        return {k: self.r.smembers(k) for k in keys if self.r.scard(k)}

    def heartbeats(self) -> list[tuple[str, float]]:
        return self.r.zrange(f"{NAMESPACE}:__heartbeats__", 0, -1, withscores=True)

    # -- reading the outcome ---------------------------------------------------------------
    @property
    def r(self) -> redis.Redis:
        if not hasattr(self, "_r"):
            self._r = redis.Redis.from_url(self.redis.url, decode_responses=True, socket_timeout=5)
        return self._r

    @property
    def store(self) -> EventStore:
        return EventStore(self.r)

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.secret('api-token')}"},
                            timeout=10)

    def records(self) -> list[EventRecord]:
        return [r for r in (self.store.get(i) for i in self.r.zrange("shipline:events", 0, -1)) if r]

    def event_for_sha(self, sha: str) -> EventRecord | None:
        return next((r for r in self.records() if r.event.get("after") == sha), None)

    def steps(self, event_id: str, stage: str, status: str | None = None) -> list[dict[str, Any]]:
        record = self.store.get(event_id)
        steps = record.steps if record else []
        return [s for s in steps if s["stage"] == stage and (status is None or s["status"] == status)]

    def deploy_head(self) -> str:
        return git(self.deploy_bare, "rev-parse", "main").strip()

    def deliver(self, path: str, delivery: tuple[bytes, dict[str, str]]) -> dict[str, Any]:
        """POST one delivery (retrying like a sender) and return the JSON answer."""
        _, status, answer = post(f"{self.url}{path}", *delivery)
        assert 200 <= status < 300, (status, answer)
        return answer

    def fleet_versions(self) -> list[str]:
        text = git(self.deploy_bare, "show", "main:fleet/vars.yaml")
        return [line.split()[1] for line in text.splitlines() if "version:" in line]

    def syncs(self, event_id: str) -> tuple[int, int]:
        """(environments synced for this event, extra syncs beyond one per environment)."""
        per_env: dict[str, int] = {}
        for step in self.steps(event_id, "sync"):
            per_env[step.get("environment", "")] = per_env.get(step.get("environment", ""), 0) + 1
        return len(per_env), sum(n - 1 for n in per_env.values())

    def commits_for(self, event_id: str) -> int:
        out = git(self.deploy_bare, "log", "main", "--format=%H", f"--grep=Shipline-Event: {event_id}")
        return len(out.split())

    def bump_commits(self) -> list[str]:
        return git(self.deploy_bare, "log", "main", "--format=%H", "--grep=Shipline-Bot: true").split()

    def manifest_revisions(self) -> set[str]:
        """Every manifest ever pushed to the image's repository (the registry's own storage)."""
        repo = self.image.split("/", 1)[1]
        revisions = (self.stack.state_dir / "registry" / "data" / "docker" / "registry" / "v2" / "repositories"
                     / repo / "_manifests" / "revisions" / "sha256")
        return {p.name for p in revisions.iterdir()} if revisions.is_dir() else set()

    def dead_letters(self, queue: str) -> list[dict[str, Any]]:
        raw = self.r.hgetall(f"{NAMESPACE}:{queue}.XQ.msgs")
        return [json.loads(v) for v in raw.values()]

    # -- making things happen --------------------------------------------------------------
    def push_app(self, slow: int = 0, text: str | None = None) -> str:
        """A real commit pushed to the app repo; its post-receive hook posts the webhook."""
        work = self.root / "app"
        (work / "web" / "slow").write_text(f"{slow}\n")
        (work / "web" / "index.html").write_text(text or f"<h1>{uuid.uuid4().hex}</h1>\n")
        git(work, "commit", "-qam", f"web: change (slow {slow})")
        git(work, "push", "-q", "origin", "HEAD:main")
        return git(work, "rev-parse", "HEAD").strip()

    def gitea_push(self, repo: str, sha: str, ref: str = "refs/heads/main",
                   delivery: str | None = None) -> tuple[bytes, dict[str, str]]:
        """A signed Gitea push delivery for ``repo`` (a name on the git server) at ``sha``."""
        commit = {"id": sha, "message": "chaos", "added": [], "removed": [], "modified": ["templates/web.yaml"]}
        body = json.dumps({
            "ref": ref, "before": "0" * 39 + "1", "after": sha, "commits": [commit], "total_commits": 1,
            "head_commit": commit, "repository": {"full_name": f"local/{repo}", "name": repo,
                                                  "clone_url": self.stack.git.repo_url(repo)},
            "pusher": {"login": "local"}, "sender": {"login": "local"},
        }).encode()
        sig = hmac.new(self.secret("webhook-secret").encode(), body, hashlib.sha256).hexdigest()
        return body, {"Content-Type": "application/json", "X-Gitea-Event": "push",
                      "X-Gitea-Delivery": delivery or str(uuid.uuid4()), "X-Gitea-Signature": sig}

    def registry_push(self, tag: str, digest: str, image: str | None = None,
                      delivery: str | None = None) -> tuple[bytes, dict[str, str]]:
        host, _, repository = (image or self.image).partition("/")
        body = json.dumps({"events": [{
            "id": delivery or str(uuid.uuid4()), "timestamp": "2024-01-01T00:00:00Z", "action": "push",
            "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 100,
                       "digest": digest, "repository": repository, "tag": tag,
                       "url": f"http://{host}/v2/{repository}/manifests/{digest}"},
            "request": {"host": host, "method": "PUT"}}]}).encode()
        return body, {"Content-Type": "application/vnd.docker.distribution.events.v1+json",
                      "Authorization": f"Bearer {self.secret('registry-token')}"}


def wait_for(check: Callable[[], Any], *, timeout: float, what: str, log: Path | None = None) -> float:
    """``wait_until`` that returns how long it took."""
    began = time.monotonic()
    wait_until(lambda: bool(check()), timeout=timeout, what=what, log=log)
    return time.monotonic() - began


def fake_digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def post(url: str, body: bytes, headers: dict[str, str], *, attempts: int = 200,
         client: httpx.Client | None = None, seen: list[int] | None = None) -> tuple[int, int, dict[str, Any]]:
    """Deliver like a real sender: retry connection errors and non-2xx (5xx) answers.

    Returns (requests made, final status, final JSON body)."""
    own = client is None
    client = client or httpx.Client(timeout=10)
    try:
        for attempt in range(1, attempts + 1):
            try:
                answer = client.post(url, content=body, headers=headers)
            except httpx.HTTPError:
                if seen is not None:
                    seen.append(0)
                time.sleep(0.1)
                continue
            if seen is not None:
                seen.append(answer.status_code)
            if answer.status_code < 500:
                return attempt, answer.status_code, answer.json()
            time.sleep(0.1)
        return attempts, 0, {}
    finally:
        if own:
            client.close()
