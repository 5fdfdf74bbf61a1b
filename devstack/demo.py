"""The demo: the seed's shape on the local stack, wired end to end.

- ``shop``: an app monorepo with two services (``frontend``, ``backend``), each a Dockerfile on
  the local busybox base with a ``RUN`` step, plus ``docs/``;
- ``shop-deploy``: kluctl-style manifests (Jinja2 templates + ``config/staging.yaml`` and
  ``config/production.yaml`` whose image versions carry ``# STAGING_IMAGE_TAG`` /
  ``# PRODUCTION_IMAGE_TAG`` markers);
- both repos live on the stack's Gitea (``dev/shop``, ``dev/shop-deploy``), whose own push
  webhooks (signed with the stack's webhook secret) reach the receiver; the config builds on
  pushes to ``main`` and on ``X.Y.Z`` tags, posts commit statuses on Gitea, bumps staging on any
  build and production on releases only, and syncs each environment into its own namespace of the
  local cluster. Git talks to Gitea with the token in ``<state>/secrets/git-credentials``.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from devstack.gitea import GiteaRepo
from devstack.process import wait_until
from devstack.stack import Stack

SERVICES = ("frontend", "backend")
SEED_DELIVERY_TIMEOUT = 60
"""Gitea's two queues (push, then webhook) poll with a backoff of up to 2 s each."""
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


def _push_tree(stack: Stack, url: str, files: dict[str, str], message: str) -> bool:
    """Seed an empty repo with one commit; False (and nothing pushed) if it has commits already."""
    git = ["git", "-c", "user.name=Shipline Demo", "-c", "user.email=demo@shipline.local"]
    env = {**os.environ, **stack.gitea.git_env()}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run(["git", "clone", "-q", url, str(work)], check=True, capture_output=True, env=env)
        if _has_commits(work):
            return False  # already seeded: keep what the user did
        for rel, text in files.items():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            (work / rel).write_text(text)
        subprocess.run([*git, "-C", str(work), "add", "-A"], check=True)
        subprocess.run([*git, "-C", str(work), "commit", "-qm", message], check=True)
        subprocess.run(["git", "-C", str(work), "push", "-q", "origin", "HEAD:main"], check=True,
                       capture_output=True, env=env)
    return True


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


def demo_config(stack: Stack, app: GiteaRepo, deploy: GiteaRepo, kubeconfig: Path | None = None) -> dict[str, Any]:
    images = [f"{stack.registry.host}/shop/{name}" for name in SERVICES]
    deploy_url = deploy.clone_url

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
        "repos": [{"name": "shop", "url": app.clone_url, "match": [app.full_name], "branches": ["main"],
                   "images": [{"name": f"{stack.registry.host}/shop/{name}", "context": name,
                               "tags": ["{describe}"]} for name in SERVICES],
                   "status": {"provider": "gitea", "api_url": stack.gitea.api_url, "repository": app.full_name,
                              "token": {"file": str(stack.gitea.token_file)}}}],
        "environments": [
            env("staging", "STAGING_IMAGE_TAG", {"semver": ">=0.0.0", "prereleases": True}, "branch"),
            env("production", "PRODUCTION_IMAGE_TAG", {"semver": ">=0.0.0"}, "release"),
        ],
    }


def create_demo(stack: Stack, kubeconfig: Path | None = None) -> dict[str, GiteaRepo]:
    """Create (once) both repos on Gitea with their push webhooks, and write the config that
    wires them.

    The seed pushes are deliveries like any other. Gitea handles a push from its queues, so
    whether a seed reaches a receiver started right after this would be a race; instead this
    returns only once Gitea has attempted each seed's delivery (before the receiver is up: refused,
    kept in the hook's history), so the seed never builds."""
    hook = f"{stack.receiver_url}/hooks/gitea"
    repos = {"app": stack.gitea.create_repo("shop"), "deploy": stack.gitea.create_repo("shop-deploy")}
    for repo in repos.values():
        stack.gitea.add_push_webhook(repo, hook, stack.secret("webhook-secret"))
    seeded = [repo for repo, files, message in (
        (repos["app"], app_files(stack), "shop: two services"),
        (repos["deploy"], deploy_files(stack), "shop-deploy: staging and production"),
    ) if _push_tree(stack, repo.clone_url, files, message)]
    wait_until(lambda: all(any(d.delivered for d in stack.gitea.deliveries(r)) for r in seeded),
               timeout=SEED_DELIVERY_TIMEOUT, what="Gitea's deliveries of the demo's seed pushes",
               log=stack.gitea.daemon.log_file)
    stack.write_config(demo_config(stack, repos["app"], repos["deploy"], kubeconfig))
    return repos


def clone_argv(stack: Stack, url: str, directory: str | Path) -> list[str]:
    """``git clone`` that keeps using the stack's Gitea credentials in the new clone."""
    helper = f"store --file={shlex.quote(str(stack.gitea.credentials_file))}"
    return ["git", "clone", "-q", "-c", f"credential.helper={helper}", url, str(directory)]


def next_steps(stack: Stack, repos: dict[str, GiteaRepo]) -> list[str]:
    kube = f"kubectl --kubeconfig {stack.kubeconfig}"
    clone = shlex.join(clone_argv(stack, repos["app"].clone_url, "shop"))
    return [
        f"{clone} && cd shop && echo '<p>v2</p>' >> frontend/index.html "
        "&& git commit -qam 'frontend: v2' && git push -q",
        f"open {stack.receiver_url}/  (API token: cat {stack.secret_file('api-token')}; Gitea, without CSS: "
        f"{stack.gitea.url}/{repos['app'].full_name}, user {stack.gitea.admin}, password: "
        f"cat {stack.gitea.password_file})",
        f"{kube} -n shop-staging get deploy -o wide -w",
    ]
