"""The stack's parts are real: Redis carries dramatiq messages, buildah builds and pushes to the
Distribution registry (which notifies a listener), and the HTTP git server takes pushes."""

from __future__ import annotations

import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dramatiq
import httpx
from dramatiq import Worker

from devstack.process import free_port
from devstack.registry import Registry
from devstack.stack import Stack
from service.broker import make_broker
from tests.fixtures_stack import build_and_push

MANIFEST_TYPES = "application/vnd.oci.image.manifest.v1+json,application/vnd.docker.distribution.manifest.v2+json"


def test_dramatiq_message_round_trip_through_real_redis(stack: Stack, redis_client) -> None:
    broker = make_broker(stack.redis.url)
    seen: list[str] = []
    done = threading.Event()

    @dramatiq.actor(broker=broker, queue_name="events", actor_name="roundtrip")
    def roundtrip(value: str) -> None:
        seen.append(value)
        done.set()

    roundtrip.send("hello")
    worker = Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        assert done.wait(10), "message never delivered"
    finally:
        worker.stop()
        broker.close()
    assert seen == ["hello"]


class _Listener(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append({"auth": self.headers.get("Authorization"), "body": json.loads(body)})
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_buildah_build_with_run_is_pushed_and_registry_notifies(stack: Stack, tmp_path: Path) -> None:
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), _Listener)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    registry = Registry(tmp_path / "reg", free_port(), notify_url=f"http://127.0.0.1:{port}/hooks/registry",
                        notify_token="tok")
    registry.start()
    try:
        build_and_push(stack, tmp_path, f"{registry.host}/demo/app:1.0.0", "echo built > /built.txt && cat /built.txt")
        answer = httpx.get(f"{registry.url}/v2/demo/app/manifests/1.0.0", headers={"Accept": MANIFEST_TYPES})
        assert answer.status_code == 200
        digest = answer.headers["Docker-Content-Digest"]
        assert digest.startswith("sha256:")
        assert len(answer.json()["layers"]) == 2  # base + RUN layer

        def pushed() -> list[dict]:
            return [e for n in _Listener.received for e in n["body"]["events"]
                    if e["action"] == "push" and e["target"].get("tag") == "1.0.0"]

        from devstack.process import wait_until

        wait_until(lambda: bool(pushed()), timeout=20, what="registry notification")
        assert pushed()[0]["target"]["digest"] == digest
        assert _Listener.received[0]["auth"] == "Bearer tok"
    finally:
        registry.stop()
        server.shutdown()


def test_clone_commit_push_through_http_git_server(stack: Stack, tmp_path: Path) -> None:
    url = stack.git.create_repo("roundtrip")
    work = tmp_path / "w"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "clone", "-q", url, str(work)], check=True, capture_output=True)
    (work / "README").write_text("hello\n")
    subprocess.run([*git, "-C", str(work), "add", "README"], check=True)
    subprocess.run([*git, "-C", str(work), "commit", "-qm", "first"], check=True)
    subprocess.run(["git", "-C", str(work), "push", "-q", "origin", "HEAD:main"], check=True, capture_output=True)
    head = subprocess.run(["git", "-C", str(work), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    again = tmp_path / "again"
    subprocess.run(["git", "clone", "-q", url, str(again)], check=True, capture_output=True)
    assert (again / "README").read_text() == "hello\n"
    remote = subprocess.run(["git", "ls-remote", url, "refs/heads/main"], capture_output=True, text=True).stdout
    assert remote.split()[0] == head
