"""``shipline-push`` (``scripts/gotools/push``): the image buildah built, pushed with the OCI keys set
on the way, and nothing else about it changed; and how it is found and how it fails."""

from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

import handlers.build.builder as builder_module
from devstack.debianbase import REPO_ROOT
from devstack.stack import Stack
from handlers.build.builder import BuildahBuilder, BuildSpec
from handlers.build.pushtool import push_tool
from handlers.errors import PermanentError
from tests.handlers.build.conftest import MANIFEST_ACCEPT


def tool() -> str:
    found = push_tool()
    assert found is not None, "shipline-push is missing: run scripts/build-push.sh"
    return str(found)


def storage_flags(root: Path) -> list[str]:
    return ["--root", str(root / "storage"), "--runroot", str(root / "run"), "--storage-driver", "vfs"]


def fetched(stack: Stack, repository: str, tag: str) -> tuple[httpx.Response, dict, dict]:
    """The manifest answer, the manifest and its config, as a puller gets them."""
    answer = httpx.get(f"{stack.registry.url}/v2/{repository}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT})
    manifest = answer.json()
    config = httpx.get(f"{stack.registry.url}/v2/{repository}/blobs/{manifest['config']['digest']}").json()
    return answer, manifest, config


def test_the_stamped_push_is_buildahs_push_plus_the_keys(stack: Stack, tmp_path: Path) -> None:
    storage, uid = tmp_path / "buildah", uuid.uuid4().hex[:10]
    (tmp_path / "Dockerfile").write_text(f"FROM {stack.base_image}\nLABEL own=kept\nRUN echo {uid} > /made.txt\n")
    local = f"{stack.registry.host}/{uid}/app:1"
    subprocess.run(["buildah", *storage_flags(storage), "bud", "--isolation", "chroot", "--tls-verify=false",
                    "-t", local, str(tmp_path)], check=True, capture_output=True)
    subprocess.run(["buildah", *storage_flags(storage), "push", "--tls-verify=false", local,
                    f"docker://{stack.registry.host}/{uid}/plain:1"], check=True, capture_output=True)
    keys = ["--label", "org.opencontainers.image.revision=abc", "--label", "own=replaced=too",
            "--annotation", "org.opencontainers.image.source=https://example/x"]

    def stamped_push(tag: str, flags: list[str]) -> str:
        """``shipline-push`` of ``local`` to ``<uid>/stamped:<tag>`` with ``flags``; its digest file."""
        digestfile = tmp_path / f"digest-{tag}"
        done = subprocess.run([tool(), *storage_flags(storage), "--tls-verify=false", "--digestfile",
                               str(digestfile), *flags, local, f"docker://{stack.registry.host}/{uid}/stamped:{tag}"],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return digestfile.read_text()

    digest = stamped_push("1", keys)
    _, plain, plain_config = fetched(stack, f"{uid}/plain", "1")
    answer, stamped, stamped_config = fetched(stack, f"{uid}/stamped", "1")
    assert answer.headers["Docker-Content-Digest"] == digest
    assert stamped["layers"] == plain["layers"], "the same layers, compressed the same"
    assert stamped["annotations"]["org.opencontainers.image.source"] == "https://example/x"
    labels = stamped_config["config"].pop("Labels")
    assert labels == {**plain_config["config"].pop("Labels"), "own": "replaced=too",
                      "org.opencontainers.image.revision": "abc"}
    assert stamped_config == plain_config, "nothing but the labels changed in the config"
    reordered = keys[2:4] + keys[0:2] + keys[4:]  # the same keys, given in another order
    assert stamped_push("2", reordered) == digest, "a push is reproducible"


@pytest.mark.parametrize(("args", "code", "says"), [
    (["--label", "novalue", "img", "docker://127.0.0.1:1/x:1"], 2, "want key=value"),
    (["only-one-argument"], 2, "usage: shipline-push"),
    (["--tls-verify=false", "127.0.0.1:1/absent:1", "docker://127.0.0.1:1/x:1"], 1, "Error: "),
])
def test_bad_input_is_refused_with_a_reason(tmp_path: Path, args: list[str], code: int, says: str) -> None:
    done = subprocess.run([tool(), *storage_flags(tmp_path), *args], capture_output=True, text=True)
    assert (done.returncode, says in done.stderr) == (code, True), done.stderr


def stand_in(tmp_path: Path, image_version: str) -> Path:
    """A ``shipline-push`` that only answers ``--version``, built with ``image_version``."""
    tool = tmp_path / f"push-{image_version}"
    tool.write_text(f"#!/bin/sh\necho 'image Version: {image_version}'\n")
    tool.chmod(0o755)
    return tool


def buildahs_image_version() -> str:
    version = subprocess.run(["buildah", "version"], check=True, capture_output=True, text=True).stdout
    found = re.search(r"^image Version:\s+(\S+)$", version, re.MULTILINE)
    assert found is not None
    return found.group(1)


def test_shipline_push_names_the_binary_and_refuses_what_cannot_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runnable = stand_in(tmp_path, buildahs_image_version())
    monkeypatch.setenv("SHIPLINE_PUSH", str(runnable))
    assert push_tool() == runnable
    monkeypatch.setenv("SHIPLINE_PUSH", str(tmp_path / "absent"))
    with pytest.raises(PermanentError, match="scripts/build-push.sh"):
        push_tool()


def test_a_binary_built_with_another_containers_image_is_not_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("SHIPLINE_PUSH", str(stand_in(tmp_path, "5.99.0")))
    with caplog.at_level("WARNING", logger="shipline.build"):
        builder = BuildahBuilder(state_dir=tmp_path, registries=[])
    assert builder.push_tool is None
    assert f"containers/image 5.99.0 and buildah with {buildahs_image_version()}" in caplog.text


def test_without_the_binary_the_keys_are_a_build_step_and_the_log_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(builder_module, "_told", set())  # what earlier tests in this process were told
    monkeypatch.delenv("SHIPLINE_PUSH", raising=False)
    monkeypatch.setenv("SHIPLINE_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    with caplog.at_level("WARNING", logger="shipline.build"):
        builder = BuildahBuilder(state_dir=tmp_path, registries=[])
    assert builder.push_tool is None and not builder.prestarts("annotations")
    assert "shipline-push not found" in caplog.text and "scripts/build-push.sh" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="shipline.build"):
        BuildahBuilder(state_dir=tmp_path, registries=[])
    assert "shipline-push not found" not in caplog.text, "said once per process, not once per build"
    spec = BuildSpec(image="reg.example/app", tags=("1",), context=tmp_path, dockerfile=tmp_path / "Dockerfile",
                     timeout_seconds=5, labels={"k": "v"})
    assert builder._push_command(spec)[-1] == "push", "buildah's own push, the labels left to the build"


def test_its_containers_image_is_the_one_buildah_is_built_with() -> None:
    """Both programs read and lock one storage; a pin that drifts from buildah's must be a choice."""
    go_mod = (REPO_ROOT / "scripts" / "gotools" / "push" / "go.mod").read_text()
    pinned = re.search(r"^\s+github\.com/containers/image/v5 v(\S+)$", go_mod, re.MULTILINE)
    assert pinned and pinned.group(1) == buildahs_image_version()
    answer = subprocess.run([tool(), "--version"], capture_output=True, text=True, check=True).stdout
    assert answer.strip() == f"image Version: {pinned.group(1)}"
