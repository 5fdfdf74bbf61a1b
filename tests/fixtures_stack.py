"""Session fixtures: the real local stack (Redis, registry, Gitea, the plain git server, base
image) on its own ports and state dir, so the suite runs even while ``make up`` is running. Never
skipped: a missing component fails with its install hint. Gitea starts once per session (about
2 s); the plain ``git http-backend`` server stays for the tests that reach into bare repos."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from devstack.stack import Stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    state = Path(os.environ.get("SHIPLINE_TEST_STATE_DIR") or tmp_path_factory.mktemp("stack"))
    s = Stack(state)
    for component in (s.redis, s.registry, s.git, s.gitea):
        component.start()
    from devstack.baseimage import build_base_image

    build_base_image(s.state_dir, s.registry.host)
    yield s
    for component in (s.gitea, s.git, s.registry, s.redis):
        component.stop()


@pytest.fixture
def redis_client(stack: Stack):  # noqa: ANN201
    import redis

    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    client.flushdb()
    yield client
    client.close()


class ServerThread:
    """uvicorn running an app in a thread, on a given port; stop() shuts it down."""

    def __init__(self, app: object, port: int) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                                    lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        with contextlib.suppress(RuntimeError):
            self.thread.join(timeout=10)


def build_and_push(stack: Stack, workdir: Path, ref: str, run: str) -> None:
    """buildah: a one-``RUN`` image on the stack's base, built in ``workdir/ctx`` and pushed as ``ref``."""
    import subprocess

    from devstack.baseimage import buildah_argv

    ctx = workdir / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(f"FROM {stack.base_image}\nRUN {run}\n")
    buildah = buildah_argv(stack.state_dir)
    subprocess.run([*buildah, "bud", "--isolation", "chroot", "--tls-verify=false", "-t", ref, str(ctx)],
                   check=True, capture_output=True)
    subprocess.run([*buildah, "push", "--tls-verify=false", ref, f"docker://{ref}"], check=True, capture_output=True)
