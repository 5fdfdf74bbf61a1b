"""A Shipline installation for fault scenarios: its own Redis (AOF, fsync always), its own
receiver and worker *processes* (``shipline serve`` / ``shipline worker`` as ``Daemon``s, killed
with ``kill -9`` of their process group), an app repo and a manifests repo on the session's git
server, images in the session's registry and an environment synced into the session's cluster.

Every connection Shipline makes goes through toxiproxy (``Proxies``): the worker's and the
receiver's to Redis (separate proxies, so the worker alone can be cut off), the worker's to the
kube-apiserver, the registry and the git server. Without toxics they pass bytes through.

What a scenario counts is read from the real parts (``evidence.py``): what the senders got back,
event records in Redis, commits with a ``Shipline-Event`` trailer in the bare manifests repo, tags
in the registry's storage, server-side applies in the apiserver's audit log (switched on here).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import secrets
import ssl
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
from devstack.kubepki import write_kubeconfig
from devstack.process import Daemon, free_port, port_open, wait_until
from devstack.redis import RedisServer
from devstack.stack import Stack
from devstack.toxiproxy import Proxy, Toxiproxy
from handlers.build import orphans
from service.broker import NAMESPACE
from service.store import EventStore
from tests.chaos import evidence
from tests.chaos.senders import Delivery, fake_sha

GIT = ["git", "-c", "user.name=Dev", "-c", "user.email=dev@example.com"]
REPO_ROOT = Path(__file__).resolve().parents[2]
QUEUE = {"max_retries": 6, "min_backoff_ms": 500, "max_backoff_ms": 3000}
"""Small retries: a failing job reaches the dead-letter set in ~15 s instead of ~10 min."""
BUILD_RETRIES = 3
"""Builds have their own retry count (``build.max_retries``)."""
NAMESPACE_YAML = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"
MARKER_YAML = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: chaos-marker\ndata:\n  value: \"{value}\"\n"
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


@dataclass(frozen=True)
class Proxies:
    redis_worker: Proxy
    redis_serve: Proxy
    kube: Proxy
    registry: Proxy
    git: Proxy

    def all(self) -> tuple[Proxy, ...]:
        return (self.redis_worker, self.redis_serve, self.kube, self.registry, self.git)

    def clear(self) -> None:
        for proxy in self.all():
            proxy.clear()


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
        self.toxiproxy = Toxiproxy(self.root, free_port())
        self.audit_log = self.root / "audit.log"
        self.app_name, self.deploy_name = f"chaos-app-{self.suffix}", f"chaos-deploy-{self.suffix}"
        self.namespace = f"chaos-{self.suffix}"
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

    @property
    def registry_host(self) -> str:
        """The registry as Shipline reaches it: through its proxy (image names carry this host)."""
        return f"127.0.0.1:{self.proxies.registry.port}"

    @property
    def image(self) -> str:
        return f"{self.registry_host}/chaos{self.suffix}/web"

    @property
    def fleet_images(self) -> list[str]:
        return [f"{self.registry_host}/fleet{self.suffix}/img{i:02d}" for i in range(FLEET)]

    @property
    def repositories(self) -> list[str]:
        return [i.split("/", 1)[1] for i in (self.image, *self.fleet_images)]

    def proxied_git(self, url: str) -> str:
        return url.replace(self.stack.git.url, f"http://127.0.0.1:{self.proxies.git.port}")

    def clone_url(self, repo: str) -> str:
        """What a forge's webhook says the repo's URL is: the one Shipline is configured with."""
        return self.proxied_git(self.stack.git.repo_url(repo))

    def create(self) -> None:
        self.redis.start()
        self.toxiproxy.start()
        tp = self.toxiproxy
        self.proxies = Proxies(
            redis_worker=tp.proxy("redis-worker", self.redis.port),
            redis_serve=tp.proxy("redis-serve", self.redis.port),
            kube=tp.proxy("kube-apiserver", self.cluster.api_port),
            registry=tp.proxy("registry", self.stack.registry.port),
            git=tp.proxy("git", self.stack.git.port))
        write_kubeconfig(self.root / "kubeconfig", server=f"https://127.0.0.1:{self.proxies.kube.port}",
                         pki=self.cluster.pki)
        self.cluster.audit_log = str(self.audit_log)
        self.cluster.restart_apiserver()
        hook = f"{self.url}/hooks/gitea"
        self.app_url = self.stack.git.create_repo(self.app_name, notify_url=hook,
                                                  secret_file=self.secret_file("webhook-secret"))
        self.deploy_url = self.stack.git.create_repo(self.deploy_name)
        self._seed(self.app_url, self.root / "app", {
            "web/Dockerfile": (f"FROM {self.stack.base_image}\nCOPY . /srv/\n"
                               "RUN sleep $(cat /srv/slow) && head -c $(cat /srv/big) /dev/urandom > /srv/blob"
                               " && echo built > /srv/built.txt\n"
                               'CMD ["httpd", "-f", "-p", "8080", "-h", "/srv"]\n'),
            "web/slow": "0\n", "web/big": "0\n", "web/index.html": "<h1>web</h1>\n"})
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

    def config(self, redis_proxy: Proxy) -> dict[str, Any]:
        kubeconfig = str(self.root / "kubeconfig")
        return {
            "state_dir": str(self.root / "shipline"),
            "server": {"host": "127.0.0.1", "port": self.port,
                       "api_token": {"file": str(self.secret_file("api-token"))}},
            "redis": {"url": f"redis://127.0.0.1:{redis_proxy.port}/0"},
            "receivers": [
                {"source": "gitea", "secret": {"file": str(self.secret_file("webhook-secret"))}},
                {"source": "github", "secret": {"file": str(self.secret_file("webhook-secret"))}},
                {"source": "registry", "secret": {"file": str(self.secret_file("registry-token"))}},
            ],
            "registries": [{"host": self.registry_host, "insecure": True, "username": "chaos",
                            "password": {"file": str(self.secret_file("registry-password"))}}],
            "repos": [
                {"name": "app", "url": self.proxied_git(self.app_url), "match": [f"local/{self.app_name}"],
                 "branches": ["main"],
                 "images": [{"name": self.image, "context": "web", "tags": ["{describe}"]}]},
                {"name": "broken", "url": f"http://127.0.0.1:{free_port()}/gone.git", "match": ["local/broken"],
                 "branches": ["main"], "images": [{"name": f"{self.registry_host}/chaos/broken"}]},
            ],
            "environments": [{
                "name": "stg", "git": {"url": self.proxied_git(self.deploy_url), "branch": "main",
                                       "path": "templates"},
                "markers": ["STG_IMAGE_TAG"],
                "images": [{"image": self.image, "policy": {"semver": ">=0.0.0", "prereleases": True}}],
                "render": {"mode": "jinja2", "vars": ["config/stg.yaml"]},
                "cluster": {"kubeconfig": kubeconfig}, "namespace": self.namespace,
                "reconcile_interval": 3600, "health_timeout": 60,
            }, {
                "name": "fleet", "git": {"url": self.proxied_git(self.deploy_url), "branch": "main",
                                         "path": "fleet/templates"},
                "markers": ["FLEET_IMAGE_TAG"],
                "images": [{"image": i, "policy": {"semver": ">=1.0.0"}} for i in self.fleet_images],
                "render": {"mode": "jinja2", "vars": ["fleet/vars.yaml"]},
                "cluster": {"kubeconfig": kubeconfig}, "namespace": f"{self.namespace}-fleet",
                "reconcile_interval": 3600, "health_timeout": 30,
            }],
            "build": {"timeout_seconds": 300, "max_retries": BUILD_RETRIES},
            "queue": QUEUE,
        }

    def write_config(self, *, worker_retention: int | None = None) -> Path:
        """``shipline.yaml`` for the receiver, ``worker.yaml`` for the workers: each reaches Redis
        through its own proxy; everything else is the same (``worker_retention``: the workers'
        ``redis.event_retention``, for workers started after this)."""
        worker = self.config(self.proxies.redis_worker)
        if worker_retention is not None:
            worker["redis"]["event_retention"] = worker_retention
        (self.root / "worker.yaml").write_text(json.dumps(worker, indent=2))
        path = self.root / "shipline.yaml"
        path.write_text(json.dumps(self.config(self.proxies.redis_serve), indent=2))
        return path

    # -- processes -----------------------------------------------------------------------
    def daemon(self, name: str) -> Daemon:
        return Daemon(name, self.run_dir)

    def _env(self, config: str = "shipline.yaml") -> dict[str, str]:
        return {"SHIPLINE_CONFIG": str(self.root / config), "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": str(REPO_ROOT)}

    def start_serve(self) -> Daemon:
        serve = self.daemon("serve")
        serve.start([sys.executable, "-m", "service.cli", "serve"], env=self._env(), cwd=REPO_ROOT)
        wait_until(lambda: port_open(self.port), timeout=30, what="shipline serve", log=serve.log_file)
        return serve

    def start_worker(self, name: str = "worker", threads: int = 4) -> Daemon:
        worker = self.daemon(name)
        worker.start([sys.executable, "-m", "service.cli", "worker", "--threads", str(threads)],
                     env=self._env("worker.yaml"), cwd=REPO_ROOT)
        return worker

    def stop(self) -> None:
        for name in ("serve", "worker", "worker2"):
            self.daemon(name).stop()
        self.hold.unlink(missing_ok=True)
        self.reject.unlink(missing_ok=True)
        self.toxiproxy.stop()
        self.redis.stop()

    def worker_pids(self, name: str = "worker") -> set[int]:
        """The worker's processes (the dramatiq parent and its forks), for a liveness check."""
        pid = self.daemon(name).pid()
        if pid is None:
            return set()
        out = subprocess.run(["pgrep", "-g", str(pid)], capture_output=True, text=True).stdout
        return {int(p) for p in out.split() if _runs_shipline(int(p))}

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

    # -- reading the outcome (from outside Shipline: see evidence.py) ------------------------
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

    @property
    def registry_data(self) -> Path:
        return self.stack.state_dir / "registry" / "data"

    def baseline(self) -> evidence.Baseline:
        return evidence.Baseline.take(self.audit_log, self.registry_data, self.repositories)

    def duplicates(self, baseline: evidence.Baseline, events: set[str]) -> evidence.Duplicates:
        return evidence.duplicates(baseline, bare=self.deploy_bare, events=events, audit_log=self.audit_log,
                                   registry_data=self.registry_data, repositories=self.repositories)

    def record_for_sha(self, sha: str, since: float = 0) -> evidence.Record | None:
        return next((r for r in evidence.records_since(self.r, since) if r.after == sha), None)

    def deploy_head(self) -> str:
        return git(self.deploy_bare, "rev-parse", "main").strip()

    def commits_since(self, head: str) -> int:
        """Commits on the manifests branch after ``head`` (every bump commit, whoever made it)."""
        return int(git(self.deploy_bare, "rev-list", "--count", f"{head}..main").strip())

    def fleet_versions(self) -> list[str]:
        text = git(self.deploy_bare, "show", "main:fleet/vars.yaml")
        return [line.split()[1] for line in text.splitlines() if "version:" in line]

    def commit_for(self, event_id: str) -> str | None:
        """The manifests commit carrying ``event_id``'s trailer (the newest, if ever more than one)."""
        out = git(self.deploy_bare, "log", "main", "--format=%H", f"--grep=Shipline-Event: {event_id}").split()
        return out[0] if out else None

    def kube_get(self, path: str) -> dict[str, Any] | None:
        """GET from the apiserver directly (not through Shipline's proxy); None on 404."""
        pki = self.cluster.pki
        tls = ssl.create_default_context(cafile=str(pki.ca_crt))
        tls.load_cert_chain(str(pki.admin_crt), str(pki.admin_key))
        with httpx.Client(verify=tls, timeout=5) as client:
            answer = client.get(f"{self.cluster.api_url}{path}")
        if answer.status_code == 404:
            return None
        answer.raise_for_status()
        return dict(answer.json())

    def kube_patch(self, path: str, patch: dict[str, Any], manager: str) -> None:
        """A strategic-merge PATCH by another field manager, straight to the apiserver: a drift edit."""
        pki = self.cluster.pki
        tls = ssl.create_default_context(cafile=str(pki.ca_crt))
        tls.load_cert_chain(str(pki.admin_crt), str(pki.admin_key))
        with httpx.Client(verify=tls, timeout=10) as client:
            client.patch(f"{self.cluster.api_url}{path}", params={"fieldManager": manager}, content=json.dumps(patch),
                         headers={"Content-Type": "application/strategic-merge-patch+json"}).raise_for_status()

    def live_revision(self, env: str = "stg") -> str:
        """The revision an environment was last synced to: ``data.revision`` of its inventory
        ConfigMap, read from the apiserver ('' before its first sync)."""
        namespace = self.namespace if env == "stg" else f"{self.namespace}-{env}"
        found = self.kube_get(f"/api/v1/namespaces/{namespace}/configmaps/{evidence.INVENTORY_PREFIX}{env}")
        return str(((found or {}).get("data") or {}).get("revision", ""))

    def release_landed(self, batch: evidence.Accepted) -> bool:
        """Every image built for the accepted pushes is committed and ``stg`` runs that commit (or a later one)."""
        children = set().union(*batch.follow_ups.values()) if batch.follow_ups else set()
        commits = [self.commit_for(c) for c in children]
        if not children or None in commits:
            return False
        live = self.live_revision()
        return bool(live) and all(_is_ancestor(self.deploy_bare, str(c), live) for c in commits)

    def manifest_revisions(self) -> set[str]:
        """Every manifest ever pushed to the image's repository (the registry's own storage)."""
        repo = self.image.split("/", 1)[1]
        revisions = (self.registry_data / "docker" / "registry" / "v2" / "repositories"
                     / repo / "_manifests" / "revisions" / "sha256")
        return {p.name for p in revisions.iterdir()} if revisions.is_dir() else set()

    def dead_letters(self, queue: str) -> list[dict[str, Any]]:
        raw = self.r.hgetall(f"{NAMESPACE}:{queue}.XQ.msgs")
        return [json.loads(v) for v in raw.values()]

    def log_lines(self, name: str) -> list[dict[str, Any]]:
        """A daemon's JSON log lines (others skipped)."""
        out = []
        log = self.daemon(name).log_file
        for line in log.read_text(errors="replace").splitlines() if log.exists() else ():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out

    # -- builds as processes -------------------------------------------------------------------
    @property
    def buildah_root(self) -> Path:
        return self.root / "shipline" / "buildah"

    def buildah_sessions(self) -> set[int]:
        """Sessions of the live buildah processes working on this world's storage."""
        sessions = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                if Path(argv[0].decode()).name == "buildah" and str(self.buildah_root).encode() in b" ".join(argv):
                    found = orphans.stat(int(entry.name))
                    if found is not None and found.state != "Z":
                        sessions.add(found.session)
        return sessions

    def busy_storage_locks(self) -> list[Path]:
        """buildah's storage lock files (containers/storage, POSIX locks) someone still holds."""
        busy = []
        for path in self.buildah_root.rglob("*.lock"):
            with path.open("r+b") as handle:
                try:
                    fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    busy.append(path)
                else:
                    fcntl.lockf(handle, fcntl.LOCK_UN)
        return busy

    # -- making things happen --------------------------------------------------------------
    def push_app(self, slow: int = 0, text: str | None = None, big: int = 0) -> str:
        """A real commit pushed to the app repo; its post-receive hook posts the webhook.
        ``slow``: seconds the build's ``RUN`` sleeps; ``big``: bytes of random data in its layer."""
        work = self.root / "app"
        (work / "web" / "slow").write_text(f"{slow}\n")
        (work / "web" / "big").write_text(f"{big}\n")
        (work / "web" / "index.html").write_text(text or f"<h1>{uuid.uuid4().hex}</h1>\n")
        git(work, "commit", "-qam", f"web: change (slow {slow})")
        git(work, "push", "-q", "origin", "HEAD:main")
        return git(work, "rev-parse", "HEAD").strip()

    def change_manifests(self) -> str:
        """A real commit to the manifests repo that changes what both environments render (a
        ``chaos-marker`` ConfigMap in each, with a new value), pushed; its sha. The deploy repo has
        no webhook: the scenario posts the delivery itself."""
        work = self.root / "deploy"
        git(work, "pull", "-q", "--rebase", "origin", "main")
        value = uuid.uuid4().hex
        for rel in ("templates/marker.yaml", "fleet/templates/marker.yaml"):
            (work / rel).write_text(MARKER_YAML.format(value=value))
        git(work, "add", "-A")
        git(work, "commit", "-qm", f"chaos: marker {value[:8]}")
        git(work, "push", "-q", "origin", "HEAD:main")
        return git(work, "rev-parse", "HEAD").strip()

    def gitea_push(self, repo: str, sha: str, ref: str = "refs/heads/main", delivery: str | None = None) -> Delivery:
        """A signed Gitea push delivery for ``repo`` (a name on the git server) at ``sha``."""
        commit = {"id": sha, "message": "chaos", "added": [], "removed": [], "modified": ["templates/web.yaml"]}
        body = json.dumps({
            "ref": ref, "before": "0" * 39 + "1", "after": sha, "commits": [commit], "total_commits": 1,
            "head_commit": commit, "repository": {"full_name": f"local/{repo}", "name": repo,
                                                  "clone_url": self.clone_url(repo)},
            "pusher": {"login": "local"}, "sender": {"login": "local"},
        }).encode()
        sig = hmac.new(self.secret("webhook-secret").encode(), body, hashlib.sha256).hexdigest()
        return "/hooks/gitea", body, {"Content-Type": "application/json", "X-Gitea-Event": "push",
                                      "X-Gitea-Delivery": delivery or str(uuid.uuid4()), "X-Gitea-Signature": sig}

    def github_push(self, repo: str, sha: str, ref: str = "refs/heads/main") -> Delivery:
        """A signed GitHub push delivery for ``repo`` (a name on the git server) at ``sha``."""
        commit = {"id": sha, "message": "chaos", "added": [], "removed": [], "modified": ["templates/web.yaml"]}
        body = json.dumps({
            "ref": ref, "before": "0" * 39 + "2", "after": sha, "commits": [commit], "head_commit": commit,
            "repository": {"full_name": f"local/{repo}", "name": repo, "clone_url": self.clone_url(repo)},
            "pusher": {"name": "local"}, "sender": {"login": "local"}, "created": False, "deleted": False,
            "forced": False,
        }).encode()
        sig = hmac.new(self.secret("webhook-secret").encode(), body, hashlib.sha256).hexdigest()
        return "/hooks/github", body, {"Content-Type": "application/json", "X-GitHub-Event": "push",
                                       "X-GitHub-Delivery": str(uuid.uuid4()), "X-Hub-Signature-256": f"sha256={sig}"}

    def registry_push(self, tag: str, digest: str, image: str | None = None, delivery: str | None = None) -> Delivery:
        host, _, repository = (image or self.image).partition("/")
        body = json.dumps({"events": [{
            "id": delivery or str(uuid.uuid4()), "timestamp": "2024-01-01T00:00:00Z", "action": "push",
            "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 100,
                       "digest": digest, "repository": repository, "tag": tag,
                       "url": f"http://{host}/v2/{repository}/manifests/{digest}"},
            "request": {"host": host, "method": "PUT"}}]}).encode()
        return "/hooks/registry", body, {"Content-Type": "application/vnd.docker.distribution.events.v1+json",
                                         "Authorization": f"Bearer {self.secret('registry-token')}"}

    def sync_only_pushes(self, count: int) -> list[Delivery]:
        """Distinct pushes to the manifests repo (each routes to a sync of both its environments)."""
        return [self.gitea_push(self.deploy_name, fake_sha()) for _ in range(count)]


def _runs_shipline(pid: int) -> bool:
    """A Shipline process (forks keep the parent's command line), not a ``git`` it is running."""
    try:
        return b"service.cli" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _is_ancestor(bare: Path, commit: str, descendant: str) -> bool:
    return subprocess.run(["git", "-C", str(bare), "merge-base", "--is-ancestor", commit, descendant],
                          capture_output=True).returncode == 0


def wait_for(check: Callable[[], Any], *, timeout: float, what: str, log: Path | None = None) -> float:
    """``wait_until`` that returns how long it took."""
    began = time.monotonic()
    wait_until(lambda: bool(check()), timeout=timeout, what=what, log=log)
    return time.monotonic() - began


def fake_digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
