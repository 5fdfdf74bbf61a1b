"""The Kubernetes Job that builds one image: a pure function of the build, so it can be read and
tested without a cluster (``handlers.build.jobs`` runs it).

The pod fetches the context itself — ``git fetch --depth 1 <url> <sha>`` (a full fetch if the
server refuses a bare id), checks the commit out and verifies it is exactly ``sha`` — then runs
``buildah bud`` (chroot isolation, vfs storage on an emptyDir) and pushes every tag, and writes the
pushed digest as its termination message. Every value from the push (URL, sha, paths, tags, build
args, labels) reaches the fixed script as an environment variable or a separate argument: never
as shell text. Exit codes tell Shipline what happened (``EXIT_*``).

The pod runs under ``settings.service_account`` with no API token mounted, unprivileged, with the
runtime's default capabilities and no privilege escalation: buildah's chroot isolation on vfs
needs nothing more (checked on the dev stack's real node). ``activeDeadlineSeconds``
is the build timeout, ``backoffLimit: 0`` (a failed build is reported, and a transient failure
is retried by Shipline's queue with a new Job), and ``ttlSecondsAfterFinished`` cleans up.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import urlsplit

from handlers.build.builder import BuildSpec, GitSource
from handlers.build.registry import is_insecure
from handlers.errors import PermanentError
from handlers.images import ImageRef
from handlers.settings import JobBuildSettings, RegistryConfig

BUILD_LABEL = "shipline.dev/build"
"""The same on every Job of one build (image, tags, source, inputs): a redelivered build finds and
adopts its Job instead of building a second image."""
MANAGED = {"app.kubernetes.io/managed-by": "shipline", "app.kubernetes.io/component": "build"}
CONTAINER = "build"
REGISTRY_AUTH_DIR = "/run/shipline/registry"
GIT_CREDENTIALS_DIR = "/run/shipline/git"
EXIT_BUILD = 2
EXIT_PUSH = 3
EXIT_PUSH_DENIED = 4
EXIT_GIT = 10
EXIT_SOURCE = 11

SCRIPT = r"""set -u
fail() { code=$1; shift; printf '%s\n' "$*" >&2; printf '%s' "$*" > /dev/termination-log; exit "$code"; }
echo "# fetching $SHIPLINE_SHA"
git init -q /work/src && cd /work/src || fail 10 "git init failed"
if ! git fetch -q --depth 1 "$SHIPLINE_GIT_URL" "$SHIPLINE_SHA" 2>/work/fetch.err; then
  echo "# the server refused a fetch by id ($(tail -n 1 /work/fetch.err)); fetching every branch and tag"
  git fetch -q "$SHIPLINE_GIT_URL" '+refs/heads/*:refs/remotes/origin/*' '+refs/tags/*:refs/tags/*' \
    || fail 10 "git fetch failed"
fi
git -c advice.detachedHead=false checkout -q "$SHIPLINE_SHA" || fail 11 "commit $SHIPLINE_SHA not found"
[ "$(git rev-parse HEAD)" = "$SHIPLINE_SHA" ] || fail 11 "checked out $(git rev-parse HEAD), not $SHIPLINE_SHA"
echo "# buildah bud"
buildah bud --isolation chroot --tls-verify="$SHIPLINE_TLS_VERIFY" -f "$SHIPLINE_DOCKERFILE" "$@" \
  "$SHIPLINE_CONTEXT" || fail 2 "buildah bud exited $?"
digest=""
while IFS= read -r ref; do
  [ -n "$ref" ] || continue
  echo "# pushing $ref"
  buildah push --tls-verify="$SHIPLINE_TLS_VERIFY" --digestfile /work/digest "$ref" "docker://$ref" \
    >/work/push.log 2>&1
  status=$?; cat /work/push.log
  [ "$status" -eq 0 ] && [ -s /work/digest ] || {
    if grep -qiE 'unauthorized|denied|authentication required|forbidden' /work/push.log; then
      fail 4 "push of $ref denied: $(tail -n 1 /work/push.log)"; fi
    fail 3 "push of $ref failed: $(tail -n 1 /work/push.log)"; }
  pushed=$(cat /work/digest); rm -f /work/digest
  [ -z "$digest" ] || [ "$digest" = "$pushed" ] || fail 3 "tags pushed with different digests: $digest $pushed"
  digest=$pushed
done <<EOF_REFS
$SHIPLINE_REFS
EOF_REFS
printf '%s' "$digest" > /dev/termination-log
echo "# pushed $digest"
"""


def build_key(spec: BuildSpec, source: GitSource) -> str:
    """The same for the same build: what it builds, from where, with which inputs and tags."""
    inputs = {"image": spec.image, "tags": list(spec.tags), "url": source.url, "sha": source.sha,
              "context": source.context, "dockerfile": source.dockerfile, "args": dict(spec.build_args),
              "target": spec.target, "labels": dict(spec.labels),
              **({"annotations": dict(spec.annotations)} if spec.annotations else {})}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:40]


def job_manifest(spec: BuildSpec, settings: JobBuildSettings, registries: list[RegistryConfig]) -> dict[str, Any]:
    """The Job for ``spec`` (which must carry its ``source``)."""
    source = _source(spec)
    key = build_key(spec, source)
    labels = {**MANAGED, BUILD_LABEL: key}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "generateName": f"build-{key[:12]}-", "namespace": settings.namespace, "labels": labels,
            "annotations": {"shipline.dev/image": spec.image, "shipline.dev/revision": source.sha,
                            "shipline.dev/tags": ",".join(spec.tags)},
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": max(1, int(spec.timeout_seconds)),
            "ttlSecondsAfterFinished": settings.ttl_seconds_after_finished,
            "template": {"metadata": {"labels": labels}, "spec": _pod_spec(spec, source, settings, registries)},
        },
    }


def _pod_spec(spec: BuildSpec, source: GitSource, settings: JobBuildSettings,
              registries: list[RegistryConfig]) -> dict[str, Any]:
    volumes: list[dict[str, Any]] = [{"name": "work", "emptyDir": {}}, {"name": "storage", "emptyDir": {}}]
    mounts: list[dict[str, Any]] = [{"name": "work", "mountPath": "/work"},
                                    {"name": "storage", "mountPath": "/var/lib/containers"}]
    env = _env(spec, source, registries)
    if settings.registry_secret:
        volumes.append({"name": "registry-auth", "secret": {"secretName": settings.registry_secret}})
        mounts.append({"name": "registry-auth", "mountPath": REGISTRY_AUTH_DIR, "readOnly": True})
        env.append({"name": "REGISTRY_AUTH_FILE", "value": f"{REGISTRY_AUTH_DIR}/.dockerconfigjson"})
    if settings.git_secret:
        volumes.append({"name": "git-credentials", "secret": {"secretName": settings.git_secret}})
        mounts.append({"name": "git-credentials", "mountPath": GIT_CREDENTIALS_DIR, "readOnly": True})
        env += [{"name": "GIT_CONFIG_COUNT", "value": "1"},
                {"name": "GIT_CONFIG_KEY_0", "value": "credential.helper"},
                {"name": "GIT_CONFIG_VALUE_0", "value": f"store --file={GIT_CREDENTIALS_DIR}/.git-credentials"}]
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": settings.service_account,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 10,
        "containers": [{
            "name": CONTAINER, "image": settings.image,
            "command": ["tini", "-g", "--", "bash", "-c", SCRIPT, "shipline-build"],
            "args": _buildah_args(spec),
            "env": env,
            "resources": {"requests": dict(settings.requests), "limits": dict(settings.limits)},
            "securityContext": {"privileged": False, "allowPrivilegeEscalation": False},
            "volumeMounts": mounts,
            "terminationMessagePolicy": "File",
        }],
        "volumes": volumes,
    }
    if settings.host_network:
        pod.update(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet")
    if settings.node_selector:
        pod["nodeSelector"] = dict(settings.node_selector)
    if settings.tolerations:
        pod["tolerations"] = [dict(t) for t in settings.tolerations]
    return pod


def _env(spec: BuildSpec, source: GitSource, registries: list[RegistryConfig]) -> list[dict[str, str]]:
    insecure = is_insecure(ImageRef.parse(spec.image).host, registries)
    values = {
        "SHIPLINE_GIT_URL": source.url, "SHIPLINE_SHA": source.sha, "SHIPLINE_CONTEXT": source.context,
        "SHIPLINE_DOCKERFILE": source.dockerfile, "SHIPLINE_TLS_VERIFY": "false" if insecure else "true",
        "SHIPLINE_REFS": "\n".join(f"{spec.image}:{tag}" for tag in spec.tags),
        "STORAGE_DRIVER": "vfs", "BUILDAH_ISOLATION": "chroot", "HOME": "/work",
    }
    return [{"name": k, "value": v} for k, v in values.items()]


def _buildah_args(spec: BuildSpec) -> list[str]:
    args: list[str] = []
    for key, value in sorted(spec.build_args.items()):
        args += ["--build-arg", f"{key}={value}"]
    for key, value in sorted(spec.labels.items()):
        args += ["--label", f"{key}={value}"]
    for key, value in sorted(spec.annotations.items()):
        args += ["--annotation", f"{key}={value}"]
    args += ["--target", spec.target] if spec.target else []
    for tag in spec.tags:
        args += ["-t", f"{spec.image}:{tag}"]
    return args


def _source(spec: BuildSpec) -> GitSource:
    if spec.source is None:
        raise PermanentError("the job backend needs the build's Git source (BuildSpec.source)")
    if "@" in urlsplit(spec.source.url).netloc:
        raise PermanentError("the repo URL carries credentials: a Job spec is readable by anyone who can "
                             "list Jobs; give them as build.job.git_secret (a .git-credentials Secret)")
    return spec.source
