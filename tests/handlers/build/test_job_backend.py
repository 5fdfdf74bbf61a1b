"""``build.backend: job`` on the real node: buildah in a Kubernetes Job, for real.

Few and focused (each build is a real pod): a push is built by a Job and the digest Shipline
records is the registry's; a superseded build's Job is deleted; a build past its deadline fails
visibly; a worker killed mid-build leaves one Job and one image; registry credentials come from a
Secret. Uses the ``app`` repo of ``conftest.py``; the builder is chosen by ``build.backend``."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client, config

from devstack.buildjobs import provision
from devstack.process import Daemon, free_port, wait_until
from devstack.realnode import NODE_NAME, RealNode
from devstack.stack import Stack
from handlers.build.report import BuildReport, ImageResult
from handlers.build.run import build_push
from handlers.events import GitPushed
from handlers.secrets import SecretRef
from handlers.settings import BuildSettings, JobBuildSettings, RegistryConfig, RepoConfig
from tests.fixtures_realnode import JobBuilds
from tests.handlers.build.conftest import MANIFEST_ACCEPT, AppRepo, dockerfile, registries

pytestmark = pytest.mark.stack
NAMESPACE = "shipline-builds"


def settings(job: JobBuildSettings, timeout: int = 180) -> BuildSettings:
    return BuildSettings(backend="job", job=job).model_copy(update={"timeout_seconds": timeout})


def one_image(app: AppRepo, run: str) -> tuple[RepoConfig, GitPushed]:
    """A commit whose ``frontend`` runs ``run``; the config builds only ``frontend``, tagged by sha."""
    app.commit({"frontend/Dockerfile": dockerfile(app.stack, run)})
    event = app.push("main")
    return app.config([{"name": app.image("frontend"), "context": "frontend", "tags": ["{short_sha}"]}]), event


def build(app: AppRepo, repo: RepoConfig, event: GitPushed, job: JobBuildSettings, timeout: int = 180,
          **kwargs: Any) -> ImageResult:
    report: BuildReport = build_push(repo, event, settings=settings(job, timeout), registries=registries(app.stack),
                                     state_dir=app.stack.state_dir, **kwargs)
    return report.images[0]


def batch(job_builds: JobBuilds) -> client.BatchV1Api:
    return client.BatchV1Api(config.new_client_from_config(config_file=str(job_builds.kubeconfig)))


def core(job_builds: JobBuilds) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(config_file=str(job_builds.kubeconfig)))


def jobs_of(job_builds: JobBuilds, sha: str) -> list[Any]:
    return [j for j in batch(job_builds).list_namespaced_job(NAMESPACE).items
            if j.metadata.annotations.get("shipline.dev/revision") == sha]


def registry_digest(app: AppRepo, tag: str) -> str | None:
    answer = app.manifest("frontend", tag)
    return answer.headers["Docker-Content-Digest"] if answer.status_code == 200 else None


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.3)
    raise AssertionError(f"{what} not seen within {timeout:.0f}s")


def running_pod(job_builds: JobBuilds, sha: str, marker: str) -> Any:
    """The build pod of ``sha`` once its log shows ``marker``."""
    for job in jobs_of(job_builds, sha):
        pods = core(job_builds).list_namespaced_pod(
            NAMESPACE, label_selector=f"batch.kubernetes.io/controller-uid={job.metadata.uid}").items
        for pod in pods:
            if pod.status.phase == "Running":
                log = core(job_builds).read_namespaced_pod_log(pod.metadata.name, NAMESPACE, container="build")
                if marker in log:
                    return pod
    return None


def test_a_push_is_built_in_a_job_on_the_real_node_with_the_registry_digest(app: AppRepo,
                                                                           job_builds: JobBuilds) -> None:
    repo, event = one_image(app, "echo built-in-a-job > /where.txt")
    result = build(app, repo, event, job_builds.settings)
    tag = event.after[:7]
    assert (result.status, result.tags) == ("built", (tag,)), result.reason + result.log_tail
    assert result.digest == registry_digest(app, tag)
    log = Path(str(result.log)).read_text()
    assert re.search(r"STEP \d/\d: RUN echo built-in-a-job", log)  # the pod's log, streamed in
    assert f"# pushed {result.digest}" in log
    (job,) = jobs_of(job_builds, event.after)
    assert job.spec.ttl_seconds_after_finished == job_builds.settings.ttl_seconds_after_finished
    assert job.spec.active_deadline_seconds == 180
    pods = core(job_builds).list_namespaced_pod(
        NAMESPACE, label_selector=f"batch.kubernetes.io/controller-uid={job.metadata.uid}").items
    assert [p.spec.node_name for p in pods] == [NODE_NAME]
    config_blob = app.config_blob("frontend", app.manifest("frontend", tag).json())
    assert config_blob["config"]["Labels"]["org.opencontainers.image.revision"] == event.after


def test_a_superseded_build_deletes_its_job(app: AppRepo, job_builds: JobBuilds) -> None:
    repo, event = one_image(app, "echo started && sleep 300")
    stop = threading.Event()
    results: list[ImageResult] = []
    thread = threading.Thread(target=lambda: results.append(
        build(app, repo, event, job_builds.settings, should_continue=lambda: not stop.is_set())))
    thread.start()
    try:
        wait_for(lambda: running_pod(job_builds, event.after, "started"), 120, "the build's RUN step")
    finally:
        stop.set()
        thread.join(60)
    assert results[0].status == "superseded"
    assert "was deleted" in results[0].reason
    wait_for(lambda: not jobs_of(job_builds, event.after), 30, "the Job gone")
    assert registry_digest(app, event.after[:7]) is None


def test_a_build_past_its_deadline_fails_visibly(app: AppRepo, job_builds: JobBuilds) -> None:
    repo, event = one_image(app, "sleep 300")
    started = time.monotonic()
    result = build(app, repo, event, job_builds.settings, timeout=20)
    assert result.status == "failed"
    assert result.reason.startswith("timeout: build exceeded 20s (the Job's activeDeadlineSeconds)")
    assert time.monotonic() - started < 20 + 60
    (job,) = jobs_of(job_builds, event.after)
    assert [(c.type, c.reason) for c in job.status.conditions if c.status == "True"][-1] == \
        ("Failed", "DeadlineExceeded")
    assert registry_digest(app, event.after[:7]) is None


KILLED_WORKER = """
import json, sys
from pathlib import Path
from handlers.build.run import build_push
from handlers.events import GitPushed
from handlers.settings import BuildSettings, RegistryConfig, RepoConfig
args = json.loads(sys.argv[1])
build_push(RepoConfig.model_validate_json(args["repo"]), GitPushed(**args["event"]),
           settings=BuildSettings.model_validate_json(args["settings"]),
           registries=[RegistryConfig.model_validate_json(r) for r in args["registries"]],
           state_dir=Path(args["state_dir"]))
"""


def test_a_worker_killed_mid_build_does_not_build_a_second_image(app: AppRepo, job_builds: JobBuilds) -> None:
    repo, event = one_image(app, "echo started && sleep 8")
    args = {"repo": repo.model_dump_json(), "event": dataclasses.asdict(event),
            "settings": settings(job_builds.settings).model_dump_json(),
            "registries": [r.model_dump_json() for r in registries(app.stack)],
            "state_dir": str(app.stack.state_dir)}
    worker = subprocess.Popen([sys.executable, "-c", KILLED_WORKER, json.dumps(args, default=str)])
    try:
        first = wait_for(lambda: running_pod(job_builds, event.after, "started"), 120, "the build's RUN step")
    finally:
        worker.kill()  # SIGKILL, mid-build: the Job runs on without it
        worker.wait()
    result = build(app, repo, event, job_builds.settings)  # the redelivered message
    assert result.status == "built", result.reason + result.log_tail
    assert "adopting Job" in Path(str(result.log)).read_text()
    (job,) = jobs_of(job_builds, event.after)
    pods = core(job_builds).list_namespaced_pod(
        NAMESPACE, label_selector=f"batch.kubernetes.io/controller-uid={job.metadata.uid}").items
    assert [p.metadata.uid for p in pods] == [first.metadata.uid]  # one pod, one build, one image
    assert result.digest == registry_digest(app, event.after[:7])


@dataclasses.dataclass(frozen=True)
class AuthRegistry:
    host: str
    config: RegistryConfig
    auth: tuple[str, str]
    secret: str


@pytest.fixture(scope="module")
def auth_registry(stack: Stack, job_builds: JobBuilds, real_node: RealNode,
                  tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A second Distribution registry that wants a password (htpasswd, bcrypt), and its Secret. It
    listens on the host's end of the node's link, which the node's namespace reaches directly (the
    stack's own servers, on 127.0.0.1, are relayed into it)."""
    root = tmp_path_factory.mktemp("auth-registry")
    user, password = "builder", "s3cret-" + root.name
    with warnings.catch_warnings():  # crypt (libxcrypt) is the stdlib's only bcrypt; htpasswd wants bcrypt
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt

        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))  # noqa: S324
    (root / "htpasswd").write_text(f"{user}:{hashed}\n")
    (root / "password").write_text(password)
    host = f"{real_node.layout.host_ip}:{free_port()}"
    (root / "config.yml").write_text(json.dumps({
        "version": 0.1, "storage": {"filesystem": {"rootdirectory": str(root / "data")}},
        "http": {"addr": host}, "auth": {"htpasswd": {"realm": "shipline-test", "path": str(root / "htpasswd")}}}))
    daemon = Daemon("auth-registry", root / "run")
    daemon.start(["docker-registry", "serve", str(root / "config.yml")])
    wait_until(lambda: httpx.get(f"http://{host}/v2/").status_code == 401, timeout=15, what="auth registry",
               log=daemon.log_file)
    provision(job_builds.kubeconfig, registry_auth={host: (user, password)}, secret_name="auth-registry")
    yield AuthRegistry(host=host, auth=(user, password), secret="auth-registry",
                       config=RegistryConfig(host=host, insecure=True, username=user,
                                             password=SecretRef(file=root / "password")))
    daemon.stop()


def test_registry_credentials_come_from_a_secret(app: AppRepo, job_builds: JobBuilds,
                                                 auth_registry: AuthRegistry) -> None:
    image = f"{auth_registry.host}/{app.uid}/frontend"
    app.commit({"frontend/Dockerfile": dockerfile(app.stack, "echo private > /p.txt")})
    event = app.push("main")
    repo = app.config([{"name": image, "context": "frontend", "tags": ["{short_sha}"]}])
    regs = [*registries(app.stack), auth_registry.config]

    def attempt(job: JobBuildSettings) -> ImageResult:
        report = build_push(repo, event, settings=settings(job), registries=regs, state_dir=app.stack.state_dir)
        return report.images[0]

    denied = attempt(job_builds.settings)
    assert denied.status == "failed" and "denied" in denied.reason, denied.reason
    built = attempt(job_builds.settings.model_copy(update={"registry_secret": auth_registry.secret}))
    assert built.status == "built", built.reason + built.log_tail
    answer = httpx.get(f"http://{auth_registry.host}/v2/{app.uid}/frontend/manifests/{event.after[:7]}",
                       headers={"Accept": MANIFEST_ACCEPT}, auth=auth_registry.auth)
    assert answer.headers["Docker-Content-Digest"] == built.digest
