"""Shipline deployed into the dev stack's own cluster: ``k8s/overlays/dev`` onto the real node.

A small overlay on top of ``k8s/overlays/dev`` (written to a directory of the caller's) changes only
what this cluster needs: the images (Shipline's own from ``devstack.shiplineimage``, and a
``redis:7.0`` stand-in built from Debian's ``redis-server`` with the official image's one
difference, protected mode off), placement on the real node (its selector and toleration), the
``shipline.yaml`` of the ConfigMap (the receivers, registries and environments of the test at
hand), and one NodePort Service in front of the receiver, reached from the host on the node's end
of its link (kube-proxy serves NodePorts there only). Everything else — ServiceAccounts, RBAC,
probes, security contexts, the Secret — is the overlay's own. Redis's claim is met by a hostPath
PersistentVolume on the node, made beforehand (the local cluster has no provisioner).
``kubectl`` is the pinned one (``devstack.selfdeploy``).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from devstack.debianbase import REPO_ROOT, push_debian_derived
from devstack.nodeapi import selector
from devstack.process import StackError
from devstack.selfdeploy import kubectl

DEV_OVERLAY = REPO_ROOT / "k8s" / "overlays" / "dev"
NAMESPACE = "shipline-system"
REDIS_REPOSITORY = "base/redis"
REDIS_DOCKERFILE = """FROM {base}
RUN command -v redis-server || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y \\
    --no-install-recommends redis-server && rm -rf /var/lib/apt/lists/*)
WORKDIR /data
# As the official image: protected mode off (the Service is the boundary), arguments appended.
ENTRYPOINT ["redis-server", "--protected-mode", "no"]
"""
WORKLOADS = (("Deployment", "shipline-receiver"), ("Deployment", "shipline-worker"),
             ("StatefulSet", "shipline-redis"))
NODE_PORT_SERVICE = "shipline-receiver-nodeport"
REDIS_CLAIM = "data-shipline-redis-0"
REDIS_UID = 999
"""The Redis StatefulSet's ``runAsUser``: a hostPath volume gets no ``fsGroup``, so its directory is
made this user's."""


def push_redis_image(state_dir: Path, registry_host: str) -> str:
    """``<registry>/base/redis:7.0-<base tag>``: Debian bookworm's Redis 7.0 on the stack's Debian base."""
    return push_debian_derived(state_dir, registry_host, repository=REDIS_REPOSITORY, tag_prefix="7.0-",
                               dockerfile=REDIS_DOCKERFILE)


def redis_volume(kubeconfig: Path, directory: Path, *, name: str = "shipline-redis-data") -> dict[str, Any]:
    """A 1 Gi hostPath PersistentVolume at ``directory`` (on the node's host), bound ahead to the
    Redis StatefulSet's claim; returns the manifest it applied."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chown(directory, REDIS_UID, REDIS_UID)
    volume = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
              "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                       "persistentVolumeReclaimPolicy": "Retain",
                       "hostPath": {"path": str(directory), "type": "Directory"},
                       "claimRef": {"namespace": NAMESPACE, "name": REDIS_CLAIM}}}
    _kubectl(kubeconfig, "apply", "--server-side", "-f", "-", stdin=json.dumps(volume))
    return volume


def write_overlay(directory: Path, *, shipline_image: str, redis_image: str, config: dict[str, Any],
                  node_port: int | None = None) -> Path:
    """The overlay described above, in ``directory``; returns it (for ``kubectl apply -k``)."""
    directory.mkdir(parents=True, exist_ok=True)
    name, _, tag = shipline_image.rpartition(":")
    redis_name, _, redis_tag = redis_image.rpartition(":")
    place = selector()
    patches: list[dict[str, Any]] = [
        {"target": {"kind": kind, "name": workload},
         "patch": json.dumps([{"op": "add", "path": "/spec/template/spec/nodeSelector", "value": place["nodeSelector"]},
                              {"op": "add", "path": "/spec/template/spec/tolerations", "value": place["tolerations"]}])}
        for kind, workload in WORKLOADS
    ]
    patches.append({"target": {"kind": "ConfigMap", "name": "shipline-config"},
                    "patch": json.dumps([{"op": "replace", "path": "/data/shipline.yaml",
                                          "value": yaml.safe_dump(config, sort_keys=False)}])})
    port: dict[str, Any] = {"name": "http", "port": 80, "targetPort": "http"}
    if node_port is not None:
        port["nodePort"] = node_port
    (directory / "nodeport.yaml").write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": NODE_PORT_SERVICE, "namespace": NAMESPACE},
        "spec": {"type": "NodePort", "selector": {"app.kubernetes.io/name": "shipline-receiver"},
                 "ports": [port]}}))
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(DEV_OVERLAY, directory), "nodeport.yaml"],
        "images": [{"name": "shipline", "newName": name, "newTag": tag},
                   {"name": "redis", "newName": redis_name, "newTag": redis_tag}],
        "patches": patches,
    }
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))
    return directory


def apply(kubeconfig: Path, overlay: Path) -> str:
    return _kubectl(kubeconfig, "apply", "--server-side", "-k", str(overlay))


def node_port(kubeconfig: Path) -> int:
    """The receiver's NodePort (allocated by the apiserver unless the overlay named one)."""
    return int(_kubectl(kubeconfig, "-n", NAMESPACE, "get", "service", NODE_PORT_SERVICE,
                        "-o", "jsonpath={.spec.ports[0].nodePort}"))


def rollout(kubeconfig: Path, *args: str, timeout: float = 300) -> str:
    """``kubectl rollout <args> -n shipline-system`` (``status`` waits up to ``timeout``): its output,
    or ``StackError`` with it."""
    wait = [f"--timeout={int(timeout)}s"] if args[0] == "status" else []
    return _kubectl(kubeconfig, "-n", NAMESPACE, "rollout", *args, *wait, timeout=timeout + 30)


def wait_rolled_out(kubeconfig: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    for kind, name in WORKLOADS:
        rollout(kubeconfig, "status", f"{kind.lower()}/{name}", timeout=max(10.0, deadline - time.monotonic()))


def _kubectl(kubeconfig: Path, *args: str, stdin: str | None = None, timeout: float = 120) -> str:
    done = subprocess.run([kubectl(), "--kubeconfig", str(kubeconfig), *args], input=stdin, capture_output=True,
                          text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise StackError(f"kubectl {' '.join(args[:4])} failed ({done.returncode}):\n"
                         f"{done.stdout[-1000:]}{done.stderr[-2000:]}")
    return done.stdout
