"""Outcomes around the happy path: what is not built, stale index entries, unreachable registries,
and credentials that never reach a command line or a log."""

from __future__ import annotations

import base64
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

import handlers.build.run as run
from handlers.build.builder import BuildahBuilder, BuildSpec
from handlers.build.cache import BuildIndex
from handlers.build.errors import BuilderGlitch, BuildFailed
from handlers.build.mirror import Mirror
from handlers.build.report import BuildIncomplete
from handlers.errors import TransientError
from handlers.events import ZERO_SHA
from handlers.images import ImageRef
from handlers.secrets import SecretRef
from handlers.settings import RegistryConfig
from tests.handlers.build.conftest import AppRepo


def test_a_branch_outside_the_config_builds_nothing(app: AppRepo) -> None:
    report = app.build(app.push("experiment"))
    assert report.nothing_to_build_reason == "branch experiment is not built"
    assert app.builder.calls == []


def test_a_deleted_branch_builds_nothing(app: AppRepo) -> None:
    report = app.build(app.event("refs/heads/main", app.pushed["refs/heads/main"], ZERO_SHA))
    assert report.nothing_to_build_reason == "refs/heads/main was deleted"


def test_an_index_entry_whose_manifest_is_gone_is_rebuilt(app: AppRepo) -> None:
    event = app.event("refs/heads/main", ZERO_SHA, app.pushed["refs/heads/main"])
    config = app.config([{"name": app.image("frontend"), "context": "frontend"}])
    first = app.build(event, config).images[0]
    index = BuildIndex(app.stack.state_dir)
    [record_file] = list(index.root.glob(f"*{app.uid}*/*.json"))
    record = json.loads(record_file.read_text())
    record_file.write_text(json.dumps({**record, "digest": "sha256:" + "0" * 64}))
    again = app.build(event, config).images[0]
    assert (first.status, again.status) == ("built", "built")
    assert json.loads(record_file.read_text())["digest"] == again.digest
    assert app.manifest("frontend", again.tags[0]).headers["Docker-Content-Digest"] == again.digest


def test_an_unreachable_registry_is_transient_and_keeps_the_report(app: AppRepo) -> None:
    event = app.event("refs/heads/main", ZERO_SHA, app.pushed["refs/heads/main"])
    config = app.config([{"name": f"127.0.0.1:9/{app.uid}/frontend", "context": "frontend"}])
    with pytest.raises(BuildIncomplete) as caught:
        app.build(event, config)
    [image] = caught.value.report.images
    assert image.status == "failed" and image.retryable and "unreachable" in image.reason
    assert app.builder.calls == [], "the ping stops the image before its build"


def test_an_image_whose_dockerfile_is_missing_fails_alone_and_says_so(app: AppRepo) -> None:
    """The keys of all images are read in one git process; one it cannot read fails only its image."""
    event = app.event("refs/heads/main", ZERO_SHA, app.pushed["refs/heads/main"])
    config = app.config([{"name": app.image("frontend"), "context": "frontend"},
                         {"name": app.image("backend"), "context": "backend", "dockerfile": "backend/Containerfile"}])
    results = {i.name: i for i in app.build(event, config).images}
    backend = results[app.image("backend")]
    assert results[app.image("frontend")].status == "built"
    assert backend.status == "failed" and not backend.retryable
    assert backend.reason.startswith("no Dockerfile at backend/Containerfile")
    assert app.builder.calls == [app.image("frontend")]


def test_each_registry_is_pinged_once_and_while_the_commit_is_fetched(app: AppRepo,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """So a remote registry's connection round trips overlap the git server's, not follow them."""
    pinged: list[str] = []
    pinging = threading.Event()
    real_ping, real_open = run.ping, run.Mirror.open

    def ping(ref: ImageRef, registries: list[RegistryConfig]) -> None:
        pinged.append(ref.host)
        pinging.set()
        real_ping(ref, registries)

    def open_mirror(**kwargs: Any) -> Mirror:
        assert pinging.wait(10), "the ping had not started when the fetch did"
        return real_open(**kwargs)

    monkeypatch.setattr(run, "ping", ping)
    monkeypatch.setattr(run.Mirror, "open", open_mirror)
    event = app.event("refs/heads/main", ZERO_SHA, app.pushed["refs/heads/main"])
    report = app.build(event)
    assert [i.status for i in report.images] == ["built", "built"]
    assert pinged == [app.registry], "two images on one registry: one ping"


def test_credentials_go_to_a_private_authfile_never_to_argv(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret-value\n")
    registry = RegistryConfig(host="reg.example", username="bot", password=SecretRef(file=secret))
    builder = BuildahBuilder(state_dir=tmp_path, registries=[registry])
    spec = BuildSpec(image="reg.example/app", tags=("1",), context=tmp_path, dockerfile=tmp_path / "Dockerfile",
                     timeout_seconds=5, build_args={"A": "b"}, target="prod", labels={"k": "v"})
    with builder._authfile() as authfile:
        assert authfile is not None and authfile.stat().st_mode & 0o077 == 0
        assert "s3cret-value" not in json.dumps(builder.bud_argv(spec, authfile))
        auth = json.loads(authfile.read_text())["auths"]["reg.example"]["auth"]
        assert base64.b64decode(auth) == b"bot:s3cret-value"
        argv = builder.bud_argv(spec, authfile)
    assert not authfile.exists()
    assert argv[argv.index("--authfile") + 1] == str(authfile)
    assert argv[argv.index("--build-arg"):argv.index("--build-arg") + 2] == ["--build-arg", "A=b"]
    assert "--tls-verify=true" in argv and argv[argv.index("--target"):][:2] == ["--target", "prod"]


FAILING_BUILDAH = """#!/bin/sh
echo 'STEP 2/2: RUN true'
echo '{line}' >&2
echo 'Error: building at STEP "RUN true": exit status 1' >&2
exit 1
"""


@pytest.mark.parametrize(("line", "error"), [
    ("Close_Fd sealing memfd copy: Device or resource busy", BuilderGlitch),
    ("/bin/sh: false: exit status 1", BuildFailed),
])
def test_a_host_glitch_in_buildah_is_retried_and_a_dockerfile_failure_is_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: str, error: type[Exception]) -> None:
    """The kernel's refusal to seal buildah's memfd (seen once in about a thousand builds) cannot
    be provoked on purpose: a stand-in ``buildah`` prints what the real one did then."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "buildah").write_text(FAILING_BUILDAH.format(line=line))
    (bin_dir / "buildah").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    (tmp_path / "Dockerfile").write_text("FROM scratch\nRUN true\n")
    builder = BuildahBuilder(state_dir=tmp_path / "state", registries=[], storage_driver="vfs")
    spec = BuildSpec(image="reg.example/app", tags=("1",), context=tmp_path, dockerfile=tmp_path / "Dockerfile",
                     timeout_seconds=30)
    with pytest.raises(error) as caught:
        builder.build(spec, log=tmp_path / "build.log", should_continue=lambda: True)
    assert type(caught.value) is error
    assert isinstance(caught.value, TransientError) == (error is BuilderGlitch)
