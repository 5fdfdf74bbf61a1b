"""The demo: the seed's shape on the local stack, wired end to end.

- ``shop``: an app monorepo with two services (``frontend``, ``backend``), each a Dockerfile on
  the local busybox base with a ``RUN`` step, plus ``docs/``;
- ``shop-deploy``: kluctl-style manifests (Jinja2 templates + ``config/staging.yaml`` and
  ``config/production.yaml`` whose image versions carry ``# STAGING_IMAGE_TAG`` /
  ``# PRODUCTION_IMAGE_TAG`` markers);
- both repos post Gitea-style webhooks to the receiver on push; the config builds on pushes to
  ``main`` and on ``X.Y.Z`` tags, bumps staging on any build and production on releases only,
  and syncs each environment into its own namespace of the local cluster.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any

from devstack.stack import Stack

SERVICES = ("frontend", "backend")
TEMPLATE = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels: {{app: {name}}}
spec:
  replicas: {{{{ replicas }}}}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
        - name: {name}
          image: "{{{{ images.{name}.repository }}}}:{{{{ images.{name}.version }}}}"
          env:
            - {{name: ENVIRONMENT, value: "{{{{ environment }}}}"}}
---
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  selector: {{app: {name}}}
  ports: [{{port: 80, targetPort: 8080}}]
"""


def _vars(stack: Stack, env: str, marker: str, replicas: int) -> str:
    lines = [f"# Variables for the {env} environment (rendered into templates/ by Shipline).",
             f"environment: {env}", f"replicas: {replicas}", "images:"]
    for name in SERVICES:
        lines += [f"  {name}:", f"    repository: {stack.registry.host}/shop/{name}",
                  f"    version: 0.0.0 # {marker}"]
    return "\n".join(lines) + "\n"


def _push_tree(url: str, files: dict[str, str], message: str) -> None:
    git = ["git", "-c", "user.name=Shipline Demo", "-c", "user.email=demo@shipline.local"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run(["git", "clone", "-q", url, str(work)], check=True, capture_output=True)
        if _has_commits(work):
            return  # already seeded: keep what the user did
        for rel, text in files.items():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            (work / rel).write_text(text)
        subprocess.run([*git, "-C", str(work), "add", "-A"], check=True)
        subprocess.run([*git, "-C", str(work), "commit", "-qm", message], check=True)
        subprocess.run(["git", "-C", str(work), "push", "-q", "origin", "HEAD:main"], check=True,
                       capture_output=True)


def _has_commits(work: Path) -> bool:
    return subprocess.run(["git", "-C", str(work), "rev-parse", "-q", "--verify", "HEAD"],
                          capture_output=True).returncode == 0


def app_files(stack: Stack) -> dict[str, str]:
    files = {"README.md": "# shop\nTwo services, built by Shipline.\n", "docs/index.md": "# Docs\n"}
    for name in SERVICES:
        files[f"{name}/Dockerfile"] = (f"FROM {stack.base_image}\nCOPY index.html /srv/index.html\n"
                                       f"RUN echo '{name} built' > /srv/built.txt\n"
                                       'CMD ["httpd", "-f", "-p", "8080", "-h", "/srv"]\n')
        files[f"{name}/index.html"] = f"<h1>{name}</h1>\n"
    return files


def deploy_files(stack: Stack) -> dict[str, str]:
    files = {
        "config/staging.yaml": _vars(stack, "staging", "STAGING_IMAGE_TAG", 1),
        "config/production.yaml": _vars(stack, "production", "PRODUCTION_IMAGE_TAG", 2),
    }
    files["templates/namespace.yaml"] = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop-{{ environment }}\n"
    for name in SERVICES:
        files[f"templates/{name}.yaml"] = TEMPLATE.format(name=name)
    return files


def demo_config(stack: Stack, app_url: str, deploy_url: str, kubeconfig: Path | None = None) -> dict[str, Any]:
    images = [f"{stack.registry.host}/shop/{name}" for name in SERVICES]

    def env(name: str, marker: str, policy: dict[str, Any], trigger: str) -> dict[str, Any]:
        return {
            "name": name, "git": {"url": deploy_url, "branch": "main", "path": "templates"},
            "markers": [marker], "trigger": trigger,
            "images": [{"image": i, "policy": policy} for i in images],
            "render": {"mode": "jinja2", "vars": [f"config/{name}.yaml"]},
            "cluster": {"kubeconfig": str(kubeconfig or stack.kubeconfig)}, "namespace": f"shop-{name}",
            "reconcile_interval": 60, "health_timeout": 60,
        }

    return {
        "repos": [{"name": "shop", "url": app_url, "match": ["local/shop"], "branches": ["main"],
                   "images": [{"name": f"{stack.registry.host}/shop/{name}", "context": name,
                               "tags": ["{describe}"]} for name in SERVICES]}],
        "environments": [
            env("staging", "STAGING_IMAGE_TAG", {"semver": ">=0.0.0", "prereleases": True}, "branch"),
            env("production", "PRODUCTION_IMAGE_TAG", {"semver": ">=0.0.0"}, "release"),
        ],
    }


def create_demo(stack: Stack, kubeconfig: Path | None = None) -> dict[str, str]:
    """Create (once) both repos with webhooks, and write the config that wires them."""
    hook = f"{stack.receiver_url}/hooks/gitea"
    secret = stack.secret_file("webhook-secret")
    app_url = stack.git.create_repo("shop", notify_url=hook, secret_file=secret)
    deploy_url = stack.git.create_repo("shop-deploy", notify_url=hook, secret_file=secret)
    _push_tree(app_url, app_files(stack), "shop: two services")
    _push_tree(deploy_url, deploy_files(stack), "shop-deploy: staging and production")
    stack.write_config(demo_config(stack, app_url, deploy_url, kubeconfig))
    return {"app": app_url, "deploy": deploy_url}


def next_steps(stack: Stack, repos: dict[str, str]) -> list[str]:
    kube = f"kubectl --kubeconfig {stack.kubeconfig}"
    return [
        f"git clone {repos['app']} shop && cd shop && echo '<p>v2</p>' >> frontend/index.html "
        "&& git commit -qam 'frontend: v2' && git push -q",
        f"open {stack.receiver_url}/  (API token: cat {stack.secret_file('api-token')})",
        f"{kube} -n shop-staging get deploy -o wide -w",
    ]
