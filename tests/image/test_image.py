"""Shipline's own image, built with buildah from the repository's Dockerfile on the local Debian
base: its entrypoint runs the CLI as an unprivileged user, it carries the tools the worker calls
(git, buildah, kubectl, and helm for the kluctl mode), it holds service/ and handlers/ and nothing
of tests/, bench/ or devstack/, and it is in the stack's registry."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import httpx
import yaml

from devstack.shiplineimage import RUNTIME_UID, ShiplineImage
from devstack.stack import Stack
from tests.image.conftest import WorkingContainer

ROOT = Path(__file__).resolve().parents[2]
MANIFEST_TYPES = "application/vnd.oci.image.manifest.v1+json,application/vnd.docker.distribution.manifest.v2+json"
MINIMAL_CONFIG = {
    "redis": {"url": "redis://127.0.0.1:6379/0"},
    "receivers": [{"source": "gitea", "secret": {"file": "/etc/shipline/secrets/webhook-secret"}}],
    "repos": [{"name": "shop", "url": "https://git.example.com/acme/shop.git",
               "images": [{"name": "registry.example.com/shop/frontend", "context": "frontend"}]}],
    "environments": [{"name": "staging", "git": {"url": "https://git.example.com/acme/shop-deploy.git"},
                      "images": [{"image": "registry.example.com/shop/frontend",
                                  "policy": {"semver": ">=0.0.0", "prereleases": True}}]}],
}


def test_entrypoint_runs_the_cli(image_container: WorkingContainer) -> None:
    assert image_container.config["Entrypoint"] == ["tini", "-s", "--", "shipline"]
    done = image_container.shipline("--help")
    assert done.returncode == 0, done.stderr
    for command in ("serve", "worker", "config", "events", "promote"):
        assert re.search(rf"│ {command}\b", done.stdout), f"{command} missing from --help"


def test_config_check_reads_the_image_default_config_path(image_container: WorkingContainer, tmp_path: Path) -> None:
    (tmp_path / "shipline.yaml").write_text(json.dumps(MINIMAL_CONFIG))
    image_container.copy(tmp_path / "shipline.yaml", "/etc/shipline/shipline.yaml")  # $SHIPLINE_CONFIG
    done = image_container.shipline("config", "check")
    assert done.returncode == 0, done.stderr
    assert "config OK: 1 receivers, 1 repos, 1 environments" in done.stdout
    assert "environment staging: https://git.example.com/acme/shop-deploy.git@main" in done.stdout


def test_config_check_in_the_image_refuses_an_unknown_key(image_container: WorkingContainer, tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(json.dumps({**MINIMAL_CONFIG, "redis": {"urll": "redis://x"}}))
    image_container.copy(tmp_path / "bad.yaml", "/etc/shipline/bad.yaml")
    done = image_container.shipline("config", "check", "--config", "/etc/shipline/bad.yaml")
    assert done.returncode == 1
    assert "redis.urll: unknown key" in done.stderr


def test_runs_as_an_unprivileged_user_that_cannot_change_the_code(image_container: WorkingContainer) -> None:
    assert image_container.config["User"] == f"{RUNTIME_UID}:{RUNTIME_UID}"
    ids = image_container.run("sh", "-c", "id -u; id -g")
    assert ids.stdout.split() == [str(RUNTIME_UID), str(RUNTIME_UID)], ids.stderr
    write = image_container.run("sh", "-c", "touch /opt/venv/lib/python3.11/site-packages/service/x.py")
    assert write.returncode != 0
    assert "Permission denied" in write.stderr


def test_carries_the_tools_the_worker_calls(image_container: WorkingContainer) -> None:
    """git (mirrors, bumps), buildah (builds), kubectl at the Dockerfile's pinned version (the
    kustomize render mode)."""
    pinned = re.search(r"^ARG KUBECTL=registry\.k8s\.io/kubectl:(\S+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert pinned is not None
    kubectl = image_container.run("kubectl", "version", "--client", "-o", "json")
    assert kubectl.returncode == 0, kubectl.stderr
    assert json.loads(kubectl.stdout)["clientVersion"]["gitVersion"] == pinned.group(1)
    tools = image_container.run("sh", "-c", "git --version && buildah --version")
    assert tools.returncode == 0, tools.stderr
    assert tools.stdout.startswith("git version 2.")
    assert "buildah version 1." in tools.stdout


def test_carries_helm_for_the_kluctl_render_mode(image_container: WorkingContainer, tmp_path: Path) -> None:
    """The kluctl mode's ``helm template`` (``handlers.sync.kluctl.helm``) run in the image as its
    user: it finds the image's helm, at the Dockerfile's pinned version, and renders a chart."""
    pinned = re.search(r"^ARG HELM=alpine/helm:(\S+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert pinned is not None
    version = image_container.run("helm", "version", "--template", "{{.Version}}")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"v{pinned.group(1)}"
    chart = tmp_path / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: hello\nversion: 0.1.0\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: '{{ .Release.Name }}'}\n"
        "data: {greeting: {{ .Values.greeting | quote }}}\n")
    image_container.copy(chart, "/tmp/chart")
    script = ("from pathlib import Path; from handlers.sync.kluctl.helm import Chart, helm_binary, template; "
              "print(helm_binary()); "
              "print(template(Chart('helm-chart.yaml', 'hello', 'apps', 'out.yaml', False, Path('/tmp/chart')), "
              "{'greeting': 'hi'}))")
    done = image_container.run("python3", "-c", script)
    assert done.returncode == 0, done.stderr
    binary, rendered = done.stdout.split("\n", 1)
    assert binary == "/usr/local/bin/helm"
    config_map = yaml.safe_load(rendered)
    assert (config_map["metadata"]["name"], config_map["data"]) == ("hello", {"greeting": "hi"})


def test_carries_shipline_push_for_the_worker(image_container: WorkingContainer) -> None:
    """The local build backend finds ``shipline-push`` (``handlers.build.pushtool``) in the image, and
    it runs there (a cgo binary: the image's glibc must load it)."""
    done = image_container.run("python3", "-c", "from handlers.build.pushtool import push_tool; print(push_tool())")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "/usr/local/bin/shipline-push"
    usage = image_container.run("shipline-push")
    assert (usage.returncode, "usage: shipline-push" in usage.stderr) == (2, True), usage.stderr


def _digests(root: Path, sizes: set[int]) -> dict[str, Path]:
    """sha256 → path of every regular file under ``root`` whose size is in ``sizes``."""
    found: dict[str, Path] = {}
    for directory, _, files in os.walk(root):
        for name in files:
            path = Path(directory, name)
            if path.is_file() and not path.is_symlink() and path.stat().st_size in sizes:
                found[hashlib.sha256(path.read_bytes()).hexdigest()] = path
    return found


def _repo_files(*tops: str) -> dict[str, Path]:
    """sha256 → path of the repository's files under ``tops`` (tiny ones, such as empty
    ``__init__.py``, say nothing about where they came from)."""
    files = [p for top in tops for p in (ROOT / top).rglob("*")
             if p.is_file() and "__pycache__" not in p.parts and p.stat().st_size >= 64]
    return {hashlib.sha256(p.read_bytes()).hexdigest(): p for p in files}


def test_holds_service_and_handlers_but_no_test_bench_or_devstack_code(image_container: WorkingContainer) -> None:
    rootfs = image_container.mount()
    site = rootfs / "opt/venv/lib/python3.11/site-packages"
    packages = {p.name for p in site.iterdir()}
    assert {"service", "handlers"} <= packages
    assert not {"tests", "bench", "devstack"} & packages
    assert not (rootfs / "src").exists(), "the build stage's sources leaked into the runtime image"

    shipped = _repo_files("service", "handlers")
    excluded = _repo_files("tests", "bench", "devstack")
    in_image = _digests(rootfs, {p.stat().st_size for p in [*shipped.values(), *excluded.values()]})
    # In a shared checkout a file can change after the build began: only those may be missing.
    built = image_container.image.started_at
    missing = [p for d, p in shipped.items() if d not in in_image and p.stat().st_mtime < built]
    assert missing == [], "the walk of the image did not find the code it ships"
    leaked = {str(excluded[d].relative_to(ROOT)): str(in_image[d].relative_to(rootfs))
              for d in set(excluded) & set(in_image)}
    assert leaked == {}


def test_is_pushed_to_the_stack_registry(stack: Stack, shipline_image: ShiplineImage) -> None:
    repository = shipline_image.repository.split("/", 1)[1]
    answer = httpx.get(f"{stack.registry.url}/v2/{repository}/manifests/{shipline_image.tag}",
                       headers={"Accept": MANIFEST_TYPES})
    assert answer.status_code == 200
    assert answer.headers["Docker-Content-Digest"] == shipline_image.digest
    config_digest = answer.json()["config"]["digest"]
    config = httpx.get(f"{stack.registry.url}/v2/{repository}/blobs/{config_digest}").json()
    assert config["config"]["User"] == f"{RUNTIME_UID}:{RUNTIME_UID}"
    assert shipline_image.base.startswith(f"{stack.registry.host}/base/debian:bookworm-")
