"""The build Job, as a manifest: what the pod runs, with what identity, limits and inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from handlers.build.builder import BuildSpec, GitSource
from handlers.build.jobspec import BUILD_LABEL, SCRIPT, build_key, job_manifest
from handlers.errors import PermanentError
from handlers.settings import BuildSettings, JobBuildSettings, RegistryConfig

REGISTRIES = [RegistryConfig(host="127.0.0.1:5999", insecure=True)]
SHA = "a" * 40


def spec(**overrides: Any) -> BuildSpec:
    values: dict[str, Any] = dict(
        image="127.0.0.1:5999/shop/frontend", tags=("0.1.0-3-gaaaaaaa", "main"), context=Path("/x/frontend"),
        dockerfile=Path("/x/frontend/Dockerfile"), timeout_seconds=300.0,
        build_args={"VERSION": "$(reboot)"}, labels={"org.opencontainers.image.revision": SHA},
        source=GitSource("http://git.example/shop.git", SHA, "frontend", "frontend/Dockerfile"))
    values.update(overrides)
    return BuildSpec(**values)


def settings(**overrides: Any) -> JobBuildSettings:
    return JobBuildSettings(image="127.0.0.1:5999/shipline/buildah:1", **overrides)


def pod(manifest: dict[str, Any]) -> dict[str, Any]:
    return manifest["spec"]["template"]["spec"]


def env(manifest: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in pod(manifest)["containers"][0]["env"]}


def test_deadline_is_the_build_timeout_and_finished_jobs_expire() -> None:
    job = job_manifest(spec(), settings(ttl_seconds_after_finished=600), REGISTRIES)
    assert job["spec"]["activeDeadlineSeconds"] == 300
    assert job["spec"]["ttlSecondsAfterFinished"] == 600
    assert job["spec"]["backoffLimit"] == 0
    assert job["metadata"]["namespace"] == "shipline-builds"


def test_pod_identity_has_no_api_token_and_no_privilege() -> None:
    spec_ = pod(job_manifest(spec(), settings(), REGISTRIES))
    container = spec_["containers"][0]
    assert spec_["serviceAccountName"] == "shipline-builder"
    assert spec_["automountServiceAccountToken"] is False
    assert container["securityContext"] == {"privileged": False, "allowPrivilegeEscalation": False}
    assert "hostNetwork" not in spec_


def test_requests_and_limits_come_from_settings() -> None:
    job = job_manifest(spec(), settings(requests={"cpu": "1", "memory": "1Gi"}, limits={"memory": "3Gi"}),
                       REGISTRIES)
    assert pod(job)["containers"][0]["resources"] == {"requests": {"cpu": "1", "memory": "1Gi"},
                                                      "limits": {"memory": "3Gi"}}


def test_push_data_reaches_the_fixed_script_only_as_env_and_arguments() -> None:
    job = job_manifest(spec(), settings(), REGISTRIES)
    container = pod(job)["containers"][0]
    assert container["command"] == ["tini", "-g", "--", "bash", "-c", SCRIPT, "shipline-build"]
    assert "$(reboot)" not in SCRIPT
    assert container["args"][:2] == ["--build-arg", "VERSION=$(reboot)"]
    assert env(job)["SHIPLINE_SHA"] == SHA
    assert env(job)["SHIPLINE_GIT_URL"] == "http://git.example/shop.git"
    assert env(job)["SHIPLINE_REFS"].splitlines() == ["127.0.0.1:5999/shop/frontend:0.1.0-3-gaaaaaaa",
                                                      "127.0.0.1:5999/shop/frontend:main"]
    assert env(job)["SHIPLINE_TLS_VERIFY"] == "false"  # the registry is configured insecure


def test_registry_credentials_come_from_the_secret_as_the_authfile() -> None:
    job = job_manifest(spec(), settings(registry_secret="registry-auth"), REGISTRIES)
    assert {"name": "registry-auth", "secret": {"secretName": "registry-auth"}} in pod(job)["volumes"]
    assert env(job)["REGISTRY_AUTH_FILE"] == "/run/shipline/registry/.dockerconfigjson"
    assert "REGISTRY_AUTH_FILE" not in env(job_manifest(spec(), settings(), REGISTRIES))


def test_a_repo_url_with_credentials_never_goes_into_a_job() -> None:
    leaky = spec(source=GitSource("https://x:token@git.example/shop.git", SHA, ".", "Dockerfile"))
    with pytest.raises(PermanentError, match="git_secret"):
        job_manifest(leaky, settings(), REGISTRIES)


def test_one_build_one_label_whatever_the_attempt() -> None:
    first, again = job_manifest(spec(), settings(), REGISTRIES), job_manifest(spec(), settings(), REGISTRIES)
    assert first["metadata"]["labels"][BUILD_LABEL] == again["metadata"]["labels"][BUILD_LABEL]
    assert first["metadata"]["generateName"].startswith("build-")
    other = spec(source=GitSource("http://git.example/shop.git", "b" * 40, "frontend", "frontend/Dockerfile"))
    assert build_key(other, other.source) != build_key(spec(), spec().source)  # type: ignore[arg-type]


def test_placement_and_host_network_are_settings() -> None:
    placed = settings(node_selector={"pool": "builds"}, host_network=True,
                      tolerations=[{"key": "builds", "operator": "Exists", "effect": "NoSchedule"}])
    spec_ = pod(job_manifest(spec(), placed, REGISTRIES))
    assert spec_["nodeSelector"] == {"pool": "builds"}
    assert spec_["tolerations"][0]["key"] == "builds"
    assert (spec_["hostNetwork"], spec_["dnsPolicy"]) == (True, "ClusterFirstWithHostNet")


def test_job_backend_needs_its_image() -> None:
    with pytest.raises(ValueError, match="job.image"):
        BuildSettings(backend="job")
    assert BuildSettings(backend="job", job=settings()).job.image.endswith("buildah:1")


def test_oci_keys_as_annotations_reach_the_job_as_annotation_flags() -> None:
    keys = {"org.opencontainers.image.revision": SHA}
    job = job_manifest(spec(labels={}, annotations=keys), settings(), REGISTRIES)
    args = pod(job)["containers"][0]["args"]
    assert args[2:4] == ["--annotation", f"org.opencontainers.image.revision={SHA}"]
    assert "--label" not in args
    labelled = job_manifest(spec(), settings(), REGISTRIES)
    assert labelled["metadata"]["labels"][BUILD_LABEL] != job["metadata"]["labels"][BUILD_LABEL]
