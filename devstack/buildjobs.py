"""What ``build.backend: job`` needs in the dev stack's cluster: the builder image, the namespace,
the build pods' ServiceAccount (no role, no token) and, when the registry wants credentials, the
``dockerconfigjson`` Secret the pods use as buildah's ``--authfile``.

The builder image is the stack's Debian base (``devstack.debianbase``: Debian bookworm with
buildah, git and tini, from Debian's archive) with one checked step on top, in the stack's registry
as ``shipline/buildah:<base tag>``.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from devstack.debianbase import push_debian_derived
from devstack.process import StackError

REPOSITORY = "shipline/buildah"
NAMESPACE = "shipline-builds"
SERVICE_ACCOUNT = "shipline-builder"
REGISTRY_SECRET = "registry-auth"
"""The name of the dockerconfigjson Secret (not a secret itself)."""
DOCKERFILE = """FROM {base}
# The base carries them (Dockerfile RUNTIME_PACKAGES); installed from Debian if it ever does not.
RUN command -v buildah && command -v git && command -v tini && command -v bash \\
 || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
     buildah git ca-certificates tini && rm -rf /var/lib/apt/lists/*)
ENV STORAGE_DRIVER=vfs BUILDAH_ISOLATION=chroot
"""


def push_builder_image(state_dir: Path, registry_host: str) -> str:
    """``<registry>/shipline/buildah:<base tag>``, built once per stack; returns the reference."""
    return push_debian_derived(state_dir, registry_host, repository=REPOSITORY, tag_prefix="", dockerfile=DOCKERFILE)


def provision(kubeconfig: Path, *, namespace: str = NAMESPACE, service_account: str = SERVICE_ACCOUNT,
              registry_auth: dict[str, tuple[str, str]] | None = None, secret_name: str = REGISTRY_SECRET) -> None:
    """Namespace, ServiceAccount (``automountServiceAccountToken: false``, bound to nothing) and,
    with ``registry_auth`` ({host: (user, password)}), the dockerconfigjson Secret. Idempotent."""
    core = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
    _apply(lambda: core.create_namespace({"metadata": {"name": namespace}}))
    _apply(lambda: core.create_namespaced_service_account(namespace, {
        "metadata": {"name": service_account}, "automountServiceAccountToken": False}))
    if registry_auth:
        secret = dockerconfig_secret(secret_name, registry_auth)
        _apply(lambda: core.create_namespaced_secret(namespace, secret),
               lambda: core.replace_namespaced_secret(secret_name, namespace, secret))


def dockerconfig_secret(name: str, auths: dict[str, tuple[str, str]]) -> dict[str, Any]:
    entries = {host: {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
               for host, (user, password) in auths.items()}
    payload = base64.b64encode(json.dumps({"auths": entries}).encode()).decode()
    return {"metadata": {"name": name}, "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": payload}}


def _apply(create: Any, replace: Any = None) -> None:
    try:
        create()
    except ApiException as exc:
        if exc.status != 409:
            raise StackError(f"provisioning Job builds failed: {exc.status} {exc.reason}") from None
        if replace is not None:
            replace()
