"""Shipline's own manifests (``k8s/``) rendered for a given image and applied to a cluster.

An overlay is rendered through a throwaway kustomization that takes it as its only resource and
sets the Shipline image with kustomize's ``images:`` (by digest when given one), as a user
pinning a release would. ``kubectl`` is the one built by ``scripts/build-kubectl.sh`` (the same
version as the control plane and the image's own).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

from devstack.debianbase import KUBECTL_SCRIPT, REPO_ROOT, cached_output
from devstack.process import StackError
from handlers.images import ImageRef

K8S_DIR = REPO_ROOT / "k8s"
RECEIVER = ("Deployment", "shipline-receiver", "receiver")
"""(kind, name, container) whose image names the Shipline image in a rendered overlay."""
KUBECTL_TIMEOUT = 120


def kubectl() -> str:
    return str(cached_output(KUBECTL_SCRIPT, "needs Go >= 1.26 (see scripts/build-kubectl.sh)") / "kubectl")


def run_kubectl(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run([kubectl(), *args], input=stdin, capture_output=True, text=True,
                          timeout=KUBECTL_TIMEOUT, check=False)
    if done.returncode != 0:
        raise StackError(f"kubectl {' '.join(args[:3])} failed ({done.returncode}): {done.stderr.strip()[-3000:]}")
    return done.stdout


def kustomize(directory: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(run_kubectl("kustomize", str(directory))) if doc]


def container_image(objects: list[dict[str, Any]], kind: str, name: str, container: str) -> str:
    for obj in objects:
        if (obj["kind"], obj["metadata"]["name"]) == (kind, name):
            for spec in obj["spec"]["template"]["spec"]["containers"]:
                if spec["name"] == container:
                    return str(spec["image"])
    raise StackError(f"no container {container!r} in {kind}/{name} of the rendered manifests")


def render_overlay(overlay: str, image: str | None = None) -> list[dict[str, Any]]:
    """``k8s/overlays/<overlay>`` rendered, with the Shipline image replaced by ``image``
    (``repo:tag`` or ``repo@sha256:...``) when given."""
    source = K8S_DIR / "overlays" / overlay
    if image is None:
        return kustomize(source)
    current = ImageRef.parse(container_image(kustomize(source), *RECEIVER)).name
    wanted = ImageRef.parse(image)
    entry: dict[str, str] = {"name": current, "newName": wanted.name}
    if wanted.digest:
        entry["digest"] = wanted.digest
    elif wanted.tag:
        entry["newTag"] = wanted.tag
    with tempfile.TemporaryDirectory(prefix="shipline-overlay-") as tmp:
        # kustomize takes no absolute resource paths: the overlay is named relative to the wrapper.
        wrapper = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                   "resources": [os.path.relpath(source, tmp)], "images": [entry]}
        (Path(tmp) / "kustomization.yaml").write_text(json.dumps(wrapper))
        return kustomize(Path(tmp))


def apply(kubeconfig: Path, objects: list[dict[str, Any]], *, dry_run: bool,
          field_manager: str = "shipline-selfdeploy") -> list[dict[str, Any]]:
    """Server-side apply (``--dry-run=server`` when ``dry_run``); returns what the apiserver
    answered for each object. Namespaces go first, for real even in a dry run: a dry-run
    Namespace is not there for the objects inside it."""
    namespaces = [o for o in objects if o["kind"] == "Namespace"]
    rest = [o for o in objects if o["kind"] != "Namespace"]
    base = ["--kubeconfig", str(kubeconfig), "apply", "--server-side", "--force-conflicts",
            f"--field-manager={field_manager}", "-o", "json", "-f", "-"]
    answered: list[dict[str, Any]] = []
    for batch, extra in ((namespaces, []), (rest, ["--dry-run=server"] if dry_run else [])):
        if batch:
            out = run_kubectl(*base, *extra, stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": batch}))
            reply = json.loads(out)
            answered.extend(reply.get("items", [reply]))
    return answered
