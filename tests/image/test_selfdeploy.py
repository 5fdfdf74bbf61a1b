"""Shipline's own manifests (``k8s/``) with the image this session built: Redis durable on a claim
(checked by the receiver's own start-up check against a real redis-server run with the manifest's
arguments), the containers' arguments, config and probes exercised in the image, and both
overlays applied (server-side dry run) to the test control plane."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio
import yaml

from devstack.kube import KubeCluster
from devstack.process import free_port, port_open, wait_until
from devstack.selfdeploy import apply, render_overlay
from devstack.shiplineimage import ShiplineImage
from devstack.stack import Stack
from service.config import parse_config
from service.durability import check_durability
from tests.image.conftest import WorkingContainer

OVERLAYS = ("dev", "production")
REDIS_CLAIM = {"dev": "1Gi", "production": "5Gi"}
WORKLOADS = (("shipline-receiver", "receiver"), ("shipline-worker", "worker"))


@pytest.fixture(scope="module")
def rendered(shipline_image: ShiplineImage) -> dict[str, list[dict[str, Any]]]:
    return {overlay: render_overlay(overlay, shipline_image.pinned) for overlay in OVERLAYS}


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objects if (o["kind"], o["metadata"]["name"]) == (kind, name))


def container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def shipline_yaml(objects: list[dict[str, Any]]) -> str:
    return str(find(objects, "ConfigMap", "shipline-config")["data"]["shipline.yaml"])


def install_dev_secrets(objects: list[dict[str, Any]], box: WorkingContainer, workdir: Path) -> None:
    """The dev overlay's Secret, where the Deployments mount it."""
    secrets = workdir / "secrets"
    secrets.mkdir()
    for key, value in find(objects, "Secret", "shipline-secrets")["data"].items():
        (secrets / key).write_bytes(base64.b64decode(value))
    box.copy(secrets, "/etc/shipline/secrets")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_redis_keeps_its_aof_on_a_claim(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    redis_set = find(rendered[overlay], "StatefulSet", "shipline-redis")
    claims = {c["metadata"]["name"]: c["spec"] for c in redis_set["spec"].get("volumeClaimTemplates", [])}
    assert claims["data"]["resources"]["requests"]["storage"] == REDIS_CLAIM[overlay]
    assert not any("emptyDir" in v for v in redis_set["spec"]["template"]["spec"].get("volumes", []))
    redis_container = container(redis_set, "redis")
    assert {"name": "data", "mountPath": "/data"} in redis_container["volumeMounts"]
    assert redis_container["args"][redis_container["args"].index("--dir") + 1] == "/data"


def test_redis_arguments_pass_the_receivers_durability_check(rendered: dict[str, list[dict[str, Any]]],
                                                              tmp_path: Path) -> None:
    """redis-server run with the manifest's own arguments: the receiver's strict check finds
    nothing that could lose an acknowledged write."""
    args = container(find(rendered["production"], "StatefulSet", "shipline-redis"), "redis")["args"]
    args[args.index("--dir") + 1] = str(tmp_path)
    port = free_port()
    server = subprocess.Popen(["redis-server", *args, "--port", str(port), "--bind", "127.0.0.1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: port_open(port), timeout=15, what="redis-server with the manifest's arguments")

        async def check() -> list[Any]:
            client = redis.asyncio.Redis(port=port)
            try:
                return await check_durability(client, "strict")
            finally:
                await client.aclose()

        assert asyncio.run(check()) == []
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_container_arguments_are_accepted_by_the_image(rendered: dict[str, list[dict[str, Any]]],
                                                       image_container: WorkingContainer) -> None:
    """Each Deployment's args, with ``--help`` after them: an unknown option fails the parse."""
    for name, name_in_pod in WORKLOADS:
        args = container(find(rendered["production"], "Deployment", name), name_in_pod)["args"]
        done = image_container.shipline(*args, "--help")
        assert done.returncode == 0, f"{name}: {args}: {done.stderr}"


def test_config_map_is_a_valid_config_that_matches_the_pods(rendered: dict[str, list[dict[str, Any]]],
                                                            image_container: WorkingContainer,
                                                            tmp_path: Path) -> None:
    objects = rendered["dev"]
    (tmp_path / "k8s.yaml").write_text(shipline_yaml(objects))
    image_container.copy(tmp_path / "k8s.yaml", "/etc/shipline/k8s.yaml")
    done = image_container.shipline("config", "check", "--config", "/etc/shipline/k8s.yaml")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("config OK")

    config = parse_config(yaml.safe_load(shipline_yaml(objects)))
    receiver = container(find(objects, "Deployment", "shipline-receiver"), "receiver")
    worker = container(find(objects, "Deployment", "shipline-worker"), "worker")
    assert {p["name"]: p["containerPort"] for p in receiver["ports"]} == {"http": config.server.port}
    assert {p["name"]: p["containerPort"] for p in worker["ports"]} == {"metrics": config.server.worker_metrics_port}
    assert worker["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    secret_keys = set(find(objects, "Secret", "shipline-secrets")["data"])
    refs = [config.server.api_token, *(r.secret for r in config.receivers)]
    for pod in (receiver, worker):
        assert {"name": "secrets", "mountPath": "/etc/shipline/secrets", "readOnly": True} in pod["volumeMounts"]
    for ref in refs:
        assert ref is not None and ref.file is not None
        assert ref.file.parent == Path("/etc/shipline/secrets") and ref.file.name in secret_keys


def test_receiver_probes_answer_from_the_image(stack: Stack, rendered: dict[str, list[dict[str, Any]]],
                                               image_container: WorkingContainer, tmp_path: Path) -> None:
    """The receiver started in the image exactly as the Deployment starts it (its args, the
    ConfigMap's config and the Secret's files; only Redis and the port are this stack's), then
    the Deployment's own probe paths are asked."""
    objects = rendered["dev"]
    config = yaml.safe_load(shipline_yaml(objects))
    port = free_port()
    config["server"].update(host="127.0.0.1", port=port)
    config["redis"]["url"] = stack.redis.url
    (tmp_path / "shipline.yaml").write_text(json.dumps(config))
    image_container.copy(tmp_path / "shipline.yaml", "/etc/shipline/shipline.yaml")
    install_dev_secrets(objects, image_container, tmp_path)
    receiver = container(find(objects, "Deployment", "shipline-receiver"), "receiver")
    log = tmp_path / "receiver.log"
    with image_container.background(*image_container.config["Entrypoint"], *receiver["args"], log=log):
        wait_until(lambda: port_open(port), timeout=60, what="shipline serve in the image", log=log)
        for probe in ("livenessProbe", "readinessProbe"):
            path = receiver[probe]["httpGet"]["path"]
            answer = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)
            assert answer.status_code == 200, f"{probe} {path}: {answer.status_code} {answer.text}"
        assert httpx.get(f"http://127.0.0.1:{port}/api/events", timeout=5).status_code == 401
    wait_until(lambda: not port_open(port), timeout=10, what="the image's receiver to stop")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_applies_to_the_control_plane_with_the_built_image(
        kube_cluster: KubeCluster, rendered: dict[str, list[dict[str, Any]]], shipline_image: ShiplineImage,
        overlay: str) -> None:
    answered = apply(kube_cluster.kubeconfig, rendered[overlay], dry_run=True)
    assert sorted((o["kind"], o["metadata"]["name"]) for o in answered) == \
        sorted((o["kind"], o["metadata"]["name"]) for o in rendered[overlay])
    for name, name_in_pod in WORKLOADS:
        assert container(find(answered, "Deployment", name), name_in_pod)["image"] == shipline_image.pinned
    claims = find(answered, "StatefulSet", "shipline-redis")["spec"]["volumeClaimTemplates"]
    assert claims[0]["spec"]["resources"]["requests"]["storage"] == REDIS_CLAIM[overlay]
