"""Rollback on real parts: staging (``rollback: auto``) takes a release whose image never becomes
ready (its pods stay Pending on the kwok nodes: ``devstack.kube.NEVER_READY``), goes Degraded once
its health wait runs out, and Shipline reverts its own bump in one commit (counted in Git), syncs
back to the good image (read from the apiserver) and holds the bad tag back."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from devstack.baseimage import buildah_argv
from devstack.kube import NEVER_READY, KubeCluster
from devstack.process import wait_until
from devstack.stack import Stack
from tests.fixtures_e2e import running_stack
from tests.fixtures_stack import build_and_push
from tests.test_end_to_end import deployed_image

pytestmark = pytest.mark.stack
HEALTH_TIMEOUT = 8


def staging_rolls_back(data: dict[str, Any]) -> None:
    for env in data["environments"]:
        if env["name"] == "staging":
            env.update(rollback="auto", health_timeout=HEALTH_TIMEOUT)


def tag_and_push(stack: Stack, built: str, ref: str) -> None:
    buildah = buildah_argv(stack.state_dir)
    subprocess.run([*buildah, "tag", built, ref], check=True, capture_output=True)
    subprocess.run([*buildah, "push", "--tls-verify=false", ref, f"docker://{ref}"], check=True, capture_output=True)


def manifest_commits(clone: Path) -> list[str]:
    subprocess.run(["git", "-C", str(clone), "pull", "-q"], check=True, capture_output=True)
    out = subprocess.run(["git", "-C", str(clone), "log", "--format=%B%x00"], check=True, capture_output=True,
                         text=True).stdout
    return [m.strip() for m in out.split("\x00") if m.strip()]


def test_a_release_that_never_becomes_ready_is_reverted_once(stack: Stack, kube_cluster: KubeCluster,
                                                               tmp_path: Path) -> None:
    with running_stack(stack, kube_cluster, tmp_path, staging_rolls_back) as parts:
        apps, repository = parts["apps"], f"{stack.registry.host}/shop/backend"
        # Between the e2e module's release (1.0.0) and the dashboard test's (1.0.1), which share the
        # demo's manifests repo: both tags are taken by staging's semver policy, neither by production.
        good, bad = f"{repository}:1.0.1-rc.1", f"{repository}:1.0.1-rc.2-{NEVER_READY}"
        build_and_push(stack, tmp_path, good, "echo rollback > /srv.txt")
        wait_until(lambda: deployed_image(apps, "shop-staging", "backend") == good, timeout=120,
                   what=f"staging backend rolled out as {good}", log=stack.service_daemons()[1].log_file)
        clone = tmp_path / "deploy"
        subprocess.run(["git", "clone", "-q", parts["repos"]["deploy"].clone_url, str(clone)], check=True,
                       capture_output=True)

        tag_and_push(stack, good, bad)

        def spec_image() -> str:
            dep = apps.read_namespaced_deployment("backend", "shop-staging")
            return dep.spec.template.spec.containers[0].image

        wait_until(lambda: spec_image() == bad, timeout=60, what=f"staging applied {bad}")
        wait_until(lambda: any("Shipline-Rollback-Of:" in m for m in manifest_commits(clone)),
                   timeout=HEALTH_TIMEOUT + 90, what="a revert commit in the manifests repo",
                   log=stack.service_daemons()[1].log_file)
        wait_until(lambda: deployed_image(apps, "shop-staging", "backend") == good, timeout=60,
                   what=f"staging back on {good}, available")
        time.sleep(HEALTH_TIMEOUT + 2)  # long enough for a second (wrong) rollback or re-bump to show

        messages = manifest_commits(clone)
        assert sum("Shipline-Rollback-Of:" in m for m in messages) == 1, messages[:5]
        bumps = [m.splitlines()[0] for m in messages if m.startswith("chore(staging): bump")]
        assert sum(bad.rsplit(":", 1)[1] in b for b in bumps) == 1, bumps
        assert spec_image() == good, "the bad tag is held back: not bumped to again"
        staging = next(e for e in parts["http"].get("/api/environments").json()["environments"]
                       if e["name"] == "staging")
        assert staging["health"] == "Healthy", staging
