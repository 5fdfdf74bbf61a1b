"""Build: ``build_push`` of a small Dockerfile against ``buildah bud`` + ``buildah push`` run directly
(same storage driver, same isolation, same layer cache settings, same context change), the work
``build_push`` does for a docs-only push (no build), and a profile of Shipline's own steps.

Each round commits a change to the image's context (so no side can reuse a cached layer for the
changed ``COPY`` and the ``RUN`` after it) and builds it six ways, each going first in turn:
Shipline with its OCI keys as labels (the default: set by ``shipline-push`` while pushing, ``bud``
started before the fetch), the same with ``build.keys_at_push: false`` (one ``LABEL`` build step),
Shipline with the keys as manifest annotations (``build.oci_metadata: annotations``), plain, plain
given the same one ``LABEL`` instruction, and a plain pipeline that gets its source as Shipline
must (``git fetch`` of the pushed branch into a bare clone, ``git archive`` of the commit), then plain. All
use the driver Shipline's ``auto`` setting picks on this machine (overlay where a mount works,
else vfs), each side its own storage. A warm-up round on each side pulls the base image into its
storage first.
"""

from __future__ import annotations

import contextlib
import cProfile
import pstats
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.common import Section, git, median, ms, run, say, started, state_dir
from handlers.build.labels import with_labels

DOCKERFILE = """FROM {base}
COPY index.html /srv/index.html
RUN echo "built" > /srv/built.txt && wc -c /srv/index.html > /srv/size.txt
CMD ["httpd", "-f", "-p", "8080", "-h", "/srv"]
"""
SERVICE_DOCKERFILE = """FROM {base}
WORKDIR /app
COPY src/ /app/src/
RUN python3 -m compileall -q /app/src
CMD ["python3", "-m", "src.service"]
"""
TARGET_RATIO = 1.05
"""#21's build target: Shipline's build + push at most this times plain buildah's."""
SERVICE_SOURCES = ("handlers", "service")
"""The service-sized image's source: this repository's own Python packages, copied into its context."""
PROFILED = (("mirror fetch", "handlers/build/mirror.py", "open"),
            ("which images changed", "handlers/build/changes.py", "changed_images"),
            ("tag values (describe)", "handlers/build/tags.py", "values_for"),
            ("commit facts", "handlers/build/run.py", "commit_facts"),
            ("content keys and registry ping, waited for (they run beside the facts and the fetch)",
             "concurrent/futures/_base.py", "result"),
            ("context checkout (kept, moved by the change)", "handlers/build/workspace.py", "_moved"),
            ("context export (when the checkout is held)", "handlers/build/mirror.py", "export"),
            ("buildah bud", "handlers/build/builder.py", "_bud"),
            ("buildah bud started before the fetch, from its Dockerfile on", "handlers/build/builder.py",
             "_bud_prestarted"),
            ("buildah push", "handlers/build/builder.py", "_push_all"))


def buildah(storage: Path, driver: str) -> list[str]:
    """The flags ``BuildahBuilder`` uses: storage under ``<state>/buildah``, the chosen driver."""
    root = storage / "buildah"
    return ["buildah", "--root", str(root / "storage"), "--runroot", str(root / "run"), "--storage-driver", driver]


def direct_build(storage: Path, driver: str, context: Path, ref: str,
                 split: dict[str, list[float]] | None = None) -> float:
    """Plain ``buildah bud`` + ``push``; ``split`` collects each one's seconds apart."""
    began = time.perf_counter()
    run([*buildah(storage, driver), "bud", "--isolation", "chroot", "--layers", "--force-rm", "--tls-verify=false",
         "-f", str(context / "Dockerfile"), "-t", ref, str(context)])
    built = time.perf_counter()
    run([*buildah(storage, driver), "push", "--tls-verify=false", "--digestfile", str(storage / "digest"), ref,
         f"docker://{ref}"])
    done = time.perf_counter()
    if split is not None:
        split.setdefault("bud", []).append(built - began)
        split.setdefault("push", []).append(done - built)
    return done - began


@contextlib.contextmanager
def timed_buildah_steps(split: dict[str, list[float]]) -> Iterator[None]:
    """Within: every ``BuildahBuilder`` bud and push timed into ``split`` (the same two processes
    ``direct_build`` times), so Shipline's own steps are its total minus these. A ``bud`` started
    before the fetch is timed from the moment it is given its Dockerfile: its start-up ran beside
    Shipline's steps, which the rest then counts whole."""
    from handlers.build.builder import BuildahBuilder

    originals = {"bud": BuildahBuilder._bud, "push": BuildahBuilder._push_all,
                 "prestarted": BuildahBuilder._bud_prestarted}

    def timed(name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return originals[name](*args, **kwargs)
            finally:
                split.setdefault("bud" if name == "prestarted" else name, []).append(time.perf_counter() - began)
        return call

    BuildahBuilder._bud, BuildahBuilder._push_all = timed("bud"), timed("push")  # type: ignore[method-assign]
    BuildahBuilder._bud_prestarted = timed("prestarted")  # type: ignore[method-assign]
    try:
        yield
    finally:
        BuildahBuilder._bud, BuildahBuilder._push_all = originals["bud"], originals["push"]  # type: ignore[method-assign]
        BuildahBuilder._bud_prestarted = originals["prestarted"]  # type: ignore[method-assign]


@dataclass(frozen=True)
class BuildStack:
    root: Path
    registry: Any
    """``devstack.registry.Registry``, started."""
    server: Any
    """``devstack.gitrepos.GitServer``, started."""
    base: str
    """The busybox base image, pushed to ``registry``."""

    def app_repo(self, files: dict[str, str], name: str = "app") -> AppRepo:
        """The ``name`` repo on the git server, cloned to ``<root>/<name>``, ``files`` its first commit."""
        url = self.server.create_repo(name)
        app = AppRepo(url, self.root / name)
        git(self.root, "clone", "-q", url, str(app.work))
        app.seed(files)
        return app


@contextlib.contextmanager
def build_stack(name: str) -> Iterator[BuildStack]:
    """A fresh temp dir with a registry and a git server running and the base image pushed."""
    from devstack.baseimage import build_base_image
    from devstack.gitrepos import GitServer
    from devstack.process import free_port
    from devstack.registry import Registry

    with state_dir(name) as root:
        stack = root / "stack"  # the daemons' and the base image's state
        registry, server = Registry(stack, free_port()), GitServer(stack, free_port())
        with started(registry, server):
            say("building the base image")
            yield BuildStack(root, registry, server, build_base_image(stack, registry.host))


def service_sources(prefix: str) -> dict[str, str]:
    """``SERVICE_SOURCES``' ``.py`` files under ``<prefix>/src/``, as ``AppRepo.seed`` takes them."""
    root = Path(__file__).resolve().parents[1]
    return {f"{prefix}/src/{path.relative_to(root)}": path.read_text()
            for top in SERVICE_SOURCES for path in sorted((root / top).rglob("*.py"))}


@dataclass(frozen=True)
class ServiceRounds:
    """Seconds per round of the service-sized build, per side, and buildah's bud/push apart."""

    files: int
    ship: list[float]
    stepped: list[float]
    direct: list[float]
    split: dict[str, dict[str, float]]


def service_sized(built: BuildStack, driver: str, rounds: int) -> ServiceRounds:
    """A Python service on the Debian base (``SERVICE_DOCKERFILE``): each round edits one of its
    source files and builds it three ways, each going first in turn (Shipline with labels set while
    pushing, the same as a ``LABEL`` step, plain ``buildah bud`` + ``push`` from a local directory),
    each in its own storage.
    Each side's edit differs, so no side finds the others' layers in the registry."""
    from devstack.debianbase import push_debian_base
    from handlers.build.run import build_push
    from handlers.settings import BuildSettings, RegistryConfig, RepoConfig

    root, registry = built.root, built.registry
    say("service-sized build: pushing the Debian base")
    base = push_debian_base(root / "stack", registry.host)
    sources = service_sources("svc")
    app = built.app_repo({"svc/Dockerfile": SERVICE_DOCKERFILE.format(base=base), **sources}, name="svc")
    edited = next(path for path in sources if path.endswith("handlers/build/run.py"))
    repo = RepoConfig.model_validate({"name": "svc", "url": app.url, "branches": ["main"], "images": [
        {"name": f"{registry.host}/bench/svc", "context": "svc", "tags": ["{short_sha}"]}]})
    registries = [RegistryConfig(host=registry.host, insecure=True)]
    context = root / "svc-direct"
    for path, text in {"svc/Dockerfile": SERVICE_DOCKERFILE.format(base=base), **sources}.items():
        (context / path).parent.mkdir(parents=True, exist_ok=True)
        (context / path).write_text(text)
    splits: dict[str, dict[str, list[float]]] = {"ship": {}, "stepped": {}, "direct": {}}

    def edit(n: int, side: str) -> str:
        return f"{sources[edited]}\n# round {n}, {side}\n"

    def shipline(n: int, side: str) -> float:
        event = app.push(edited, edit(n, side))
        settings = BuildSettings(keys_at_push=side != "stepped")
        with timed_buildah_steps(splits[side]) if n else contextlib.nullcontext():
            began = time.perf_counter()
            report = build_push(repo, event, settings=settings, registries=registries, state_dir=root / f"svc-{side}")
            elapsed = time.perf_counter() - began
        if [i.status for i in report.images] != ["built"]:
            raise RuntimeError(f"build_push did not build: {report.to_dict()}")
        return elapsed

    def direct(n: int, side: str) -> float:
        (context / edited).write_text(edit(n, side))
        return direct_build(root / "svc-direct-storage", driver, context / "svc",
                            f"{registry.host}/bench/svc-direct:r{n}", splits["direct"] if n else None)

    sides = {"ship": shipline, "stepped": shipline, "direct": direct}
    times: dict[str, list[float]] = {side: [] for side in sides}
    say("service-sized build: warm-up round (pulls the Debian base into each storage)")
    for side, fn in sides.items():
        fn(0, side)
    for n in range(1, rounds + 1):
        order = list(sides.items())
        for side, fn in order[n % 3:] + order[:n % 3]:
            times[side].append(fn(n, side))
        say(f"service-sized round {n}: " + ", ".join(f"{side} {times[side][-1]:.2f} s" for side in sides))
    split = {side: {step: median(v) for step, v in steps.items()} for side, steps in splits.items()}
    return ServiceRounds(len(sources), times["ship"], times["stepped"], times["direct"], split)


SIDE_NAMES = {"ship": "Shipline (labels)", "stepped": "Shipline (labels, `keys_at_push: false`)",
              "annotated": "Shipline (annotations)", "direct": "plain"}


def split_text(split: dict[str, dict[str, float]], totals: dict[str, float]) -> str:
    """Each side's median ``bud`` / ``push`` and the rest of its median total (``totals``, by side):
    Shipline's own steps, or for plain next to nothing."""
    return "; ".join(f"{SIDE_NAMES[side]} {ms(split[side]['bud'])} / {ms(split[side]['push'])}, the rest "
                     f"{ms(total - split[side]['bud'] - split[side]['push'])}" for side, total in totals.items())


def paired(mine: list[float], theirs: list[float]) -> str:
    """The median and range of ``mine[i] / theirs[i]``, as ``1.08× [0.97–1.21×]``."""
    ratios = sorted(a / b for a, b in zip(mine, theirs, strict=True))
    return f"{median(ratios):.3f}× [{ratios[0]:.2f}–{ratios[-1]:.2f}×]"


@dataclass(frozen=True)
class FetchRounds:
    """Seconds per round: Shipline's mirror fetch of the pushed commit, and one v2 request for it."""

    mirror: list[float]
    request: list[float]


def fetch_floor(app: AppRepo, state: Path, rounds: int) -> FetchRounds:
    """What fetching the pushed commit costs, apart: Shipline's step (``Mirror.open`` for the one
    commit: one protocol v2 request, the objects written and checked by ``git unpack-objects
    --strict``, the ref written) against the least any builder that fetches its source pays this
    server (the same request from a client kept across rounds, nothing written).
    Each round pushes a one-line change and times both, each going first in turn."""
    import httpx

    from handlers.build.mirror import Mirror, Want

    def by_mirror(event: Any) -> None:
        Mirror.open(state_dir=state, name="floor", url=app.url, want=Want(event.after, event.ref))

    def by_request(event: Any) -> None:  # the mirror holds the push's parent: it was fetched last round
        one_fetch_request(client, app.url, event)

    mirror: list[float] = []
    request: list[float] = []
    Mirror.open(state_dir=state, name="floor", url=app.url)  # the clone, once
    with httpx.Client(timeout=30) as client:
        for n in range(rounds + 1):
            event = app.push("app/index.html", f"<h1>fetch round {n}</h1>\n")
            for bucket, fn in ((mirror, by_mirror), (request, by_request))[::1 if n % 2 else -1]:
                began = time.perf_counter()
                fn(event)
                if n:  # the first round warms both
                    bucket.append(time.perf_counter() - began)
    return FetchRounds(mirror, request)


def one_fetch_request(client: Any, url: str, event: Any) -> None:
    """The floor of any builder that fetches: one protocol v2 ``fetch`` request for the pushed
    commit, its parent offered as ``have``, from ``client`` (an ``httpx.Client`` kept across rounds)."""
    from handlers.build.packfetch import HEADERS, fetch_request

    answer = client.post(f"{url}/git-upload-pack", content=fetch_request(event.after, [event.before]), headers=HEADERS)
    if answer.status_code != 200 or b"packfile" not in answer.content:
        raise RuntimeError(f"the v2 fetch request failed: HTTP {answer.status_code}")


@dataclass(frozen=True)
class DescribeRounds:
    """Seconds per round of bringing a ``{describe}`` build's commit and tags into a mirror."""

    mirror: list[float]
    """``Mirror.open`` with ``Want(tags=True)``: ``ls-refs`` beside the fetch, tags moved by ``update-ref``."""
    git: list[float]
    """``git fetch --prune`` in a ``--mirror`` clone: what Shipline ran before, and what a pipeline runs."""
    tags: int


def describe_fetch(app: AppRepo, state: Path, rounds: int, tags: int = 30) -> DescribeRounds:
    """A ``{describe}`` build's source step: ``tags`` release tags on the remote, a one-line push
    each round and a new tag every fifth; each way goes first in turn, and each must end with
    ``git describe`` naming the newest tag."""
    from handlers.build.mirror import Mirror, Want

    for n in range(tags):
        app.push("app/index.html", f"<h1>release {n}</h1>\n")
        git(app.work, "tag", "-a", "-m", f"release 1.{n}.0", f"1.{n}.0")
    git(app.work, "push", "-q", "--tags", "origin")
    plain = state / "plain.git"
    git(state.parent, "clone", "-q", "--mirror", app.url, str(plain))
    Mirror.open(state_dir=state, name="describe", url=app.url)  # the clone, once
    mirror: list[float] = []
    fetched: list[float] = []

    def by_mirror(event: Any) -> Path:
        return Mirror.open(state_dir=state, name="describe", url=app.url,
                           want=Want(event.after, event.ref, tags=True)).path

    def by_git(event: Any) -> Path:
        git(plain, "fetch", "-q", "--prune", "origin")
        return plain

    for n in range(rounds + 1):
        event = app.push("app/index.html", f"<h1>describe round {n}</h1>\n")
        if n % 5 == 0:
            git(app.work, "tag", f"2.{n}.0")
            git(app.work, "push", "-q", "origin", f"refs/tags/2.{n}.0")
        for bucket, fn in ((mirror, by_mirror), (fetched, by_git))[::1 if n % 2 else -1]:
            began = time.perf_counter()
            where = fn(event)
            if n:  # the first round warms both
                bucket.append(time.perf_counter() - began)
            described = git(where, "describe", "--tags", event.after).strip()
            if not described.startswith(f"2.{n - n % 5}.0"):
                raise RuntimeError(f"describe in {where} gave {described} in round {n}")
    return DescribeRounds(mirror, fetched, tags)


@dataclass(frozen=True)
class RemoteRounds:
    """Shipline's own steps per build (its total minus ``bud`` and ``push``) with the git server and
    the registry behind toxiproxy, and one fetch request through the same proxy (the floor)."""

    latency_ms: int
    own: list[float]
    request: list[float]


def remote_rounds(built: BuildStack, driver: str, rounds: int, latency_ms: int = 10) -> RemoteRounds:
    """Each round pushes a one-line change and builds it with the git server and the registry
    ``latency_ms`` away each way (toxiproxy ``latency`` toxics, up and down), then sends one
    protocol v2 fetch request for the same commit through the same proxy from a client kept across
    rounds: the least any builder that fetches waits for."""
    from urllib.parse import urlsplit

    import httpx

    from devstack.process import free_port
    from devstack.toxiproxy import Toxiproxy
    from handlers.build.run import build_push
    from handlers.settings import BuildSettings, RegistryConfig, RepoConfig

    app = built.app_repo({"app/Dockerfile": DOCKERFILE.format(base=built.base), "app/index.html": "<h1>seed</h1>\n"},
                         name="remote")
    proxies = Toxiproxy(built.root / "toxiproxy", free_port())
    own: list[float] = []
    request: list[float] = []
    with started(proxies), httpx.Client(timeout=30) as client:
        git_port = urlsplit(app.url).port
        to_git, to_registry = proxies.proxy("git", git_port or 80), proxies.proxy("registry", built.registry.port)
        for proxy in (to_git, to_registry):
            for stream in ("upstream", "downstream"):
                proxy.add_toxic("latency", stream=stream, latency=latency_ms)
        url = app.url.replace(f":{git_port}/", f":{to_git.port}/")
        host = f"127.0.0.1:{to_registry.port}"
        repo = RepoConfig.model_validate({"name": "remote", "url": url, "branches": ["main"], "images": [
            {"name": f"{host}/bench/remote", "context": "app", "tags": ["{short_sha}"]}]})
        registries = [RegistryConfig(host=host, insecure=True)]
        for n in range(rounds + 1):
            event = app.push("app/index.html", f"<h1>remote round {n}</h1>\n")
            split: dict[str, list[float]] = {}
            with timed_buildah_steps(split):
                began = time.perf_counter()
                report = build_push(repo, event, settings=BuildSettings(), registries=registries,
                                    state_dir=built.root / "remote-state")
                total = time.perf_counter() - began
            if [i.status for i in report.images] != ["built"]:
                raise RuntimeError(f"build_push did not build: {report.to_dict()}")
            began = time.perf_counter()
            one_fetch_request(client, url, event)
            if n:  # the first round pulls the base image and opens the connections
                request.append(time.perf_counter() - began)
                own.append(total - sum(split["bud"]) - sum(split["push"]))
    return RemoteRounds(latency_ms, own, request)


class InlinePool:
    """``ThreadPoolExecutor`` stand-in running ``map`` in the calling thread, so cProfile sees the images."""

    def __init__(self, **_: Any) -> None:
        pass

    def __enter__(self) -> InlinePool:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def map(self, fn: Any, items: Any) -> Any:
        return [fn(item) for item in items]


def profile_phases(fn: Any) -> dict[str, float]:
    """Seconds spent in each of ``PROFILED`` (cumulative, cProfile) during one call of ``fn``."""
    import handlers.build.run as run_module

    profiler = cProfile.Profile()
    pool, run_module.ThreadPoolExecutor = run_module.ThreadPoolExecutor, InlinePool  # type: ignore[misc]
    try:
        profiler.runcall(fn)
    finally:
        run_module.ThreadPoolExecutor = pool  # type: ignore[misc]
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    out: dict[str, float] = {}
    for label, path, name in PROFILED:
        out[label] = sum(v[3] for (file, _, func), v in stats.items() if file.endswith(path) and func == name)
    return out


class AppRepo:
    """A clone of the app repo on the git server: commit a change, push, describe it as an event."""

    def __init__(self, url: str, work: Path) -> None:
        self.url = url
        self.work = work

    def seed(self, files: dict[str, str]) -> None:
        for path, text in files.items():
            (self.work / path).parent.mkdir(parents=True, exist_ok=True)
            (self.work / path).write_text(text)
        git(self.work, "add", "-A")
        git(self.work, "commit", "-qm", "seed")
        git(self.work, "push", "-q", "origin", "HEAD:main")

    def push(self, path: str, text: str) -> Any:
        from handlers.events import GitPushed

        before = git(self.work, "rev-parse", "HEAD").strip()
        (self.work / path).write_text(text)
        git(self.work, "add", "-A")
        git(self.work, "commit", "-qm", f"change {path}")
        git(self.work, "push", "-q", "origin", "HEAD:main")
        after = git(self.work, "rev-parse", "HEAD").strip()
        return GitPushed(repo="bench/app", ref="refs/heads/main", before=before, after=after, changed_paths=(path,),
                         pusher="bench", delivery_id=after[:12], source="gitea", clone_url=self.url)


def bench(quick: bool = False) -> Section:
    from handlers.build.run import build_push
    from handlers.build.storage import storage_driver
    from handlers.settings import BuildSettings, RegistryConfig, RepoConfig

    rounds = 2 if quick else 15  # this VM drifts ±10 % between rounds: a median of 15 holds still
    section = Section("build", "Build")
    with build_stack("build") as built:
        root, registry, base = built.root, built.registry, built.base
        app = built.app_repo({"app/Dockerfile": DOCKERFILE.format(base=base), "app/index.html": "<h1>seed</h1>\n",
                              "docs/index.md": "# Docs\n"})
        url = app.url
        image = f"{registry.host}/bench/app"
        repo = RepoConfig.model_validate({"name": "app", "url": url, "branches": ["main"], "images": [
            {"name": image, "context": "app", "tags": ["{short_sha}"]}]})
        settings, registries = BuildSettings(), [RegistryConfig(host=registry.host, insecure=True)]
        annotating, stepping = BuildSettings(oci_metadata="annotations"), BuildSettings(keys_at_push=False)
        ship_state, ann_state, direct_state = root / "shipline", root / "annotations", root / "direct"
        stepped_state = root / "stepped"
        labelled_state = root / "labelled"  # its own storage: a shared one would slow both by its size
        fetched_state, plain_clone = root / "fetched", root / "plain.git"
        git(root, "clone", "-q", "--bare", url, str(plain_clone))
        choice = storage_driver(settings.storage_driver, ship_state / "buildah" / "storage")
        say(f"storage driver: {choice.driver} ({choice.reason})")

        splits: dict[str, dict[str, list[float]]] = {"ship": {}, "stepped": {}, "annotated": {}, "direct": {}}
        sides = {"ship": (settings, ship_state), "stepped": (stepping, stepped_state),
                 "annotated": (annotating, ann_state)}

        def shipline_round(n: int, side: str = "ship") -> float:
            event = app.push("app/index.html", f"<h1>round {n} {side}</h1>\n")
            timing = timed_buildah_steps(splits[side]) if 0 < n <= rounds \
                else contextlib.nullcontext()  # not the warm-up, not the profiled round
            with timing:
                began = time.perf_counter()
                report = build_push(repo, event, settings=sides[side][0], registries=registries,
                                    state_dir=sides[side][1])
                elapsed = time.perf_counter() - began
            status = [i.status for i in report.images]
            if status != ["built"]:
                raise RuntimeError(f"build_push did not build: {report.to_dict()}")
            return elapsed

        def direct_round(n: int, labels: dict[str, str] | None = None) -> float:
            context = root / "direct-context"
            context.mkdir(exist_ok=True)
            dockerfile = DOCKERFILE.format(base=base)
            (context / "Dockerfile").write_text(with_labels(dockerfile, labels or {}) or dockerfile)
            side = "labelled" if labels else "direct"  # distinct content: no side reuses the other's COPY
            (context / "index.html").write_text(f"<h1>{side} round {n}</h1>\n")
            return direct_build(labelled_state if labels else direct_state, choice.driver, context,
                                f"{registry.host}/bench/{side}:r{n}", None if labels or not n else splits["direct"])

        def labelled_round(n: int) -> float:
            """The plain build given the same one ``LABEL`` instruction Shipline appends (three
            OCI labels whose revision changes every round): what the labels cost, apart."""
            return direct_round(n, {"org.opencontainers.image.revision": f"{n:040x}",
                                    "org.opencontainers.image.source": url,
                                    "org.opencontainers.image.created": f"2026-01-01T00:00:{n % 60:02d}Z"})

        def annotated_round(n: int) -> float:
            return shipline_round(n, "annotated")

        def stepped_round(n: int) -> float:
            return shipline_round(n, "stepped")

        def fetched_round(n: int) -> float:
            """A plain pipeline's own source step: fetch the pushed branch, export the commit."""
            event = app.push("app/index.html", f"<h1>round {n} fetched</h1>\n")
            context = root / f"fetched-context-{n}"
            began = time.perf_counter()
            git(plain_clone, "fetch", "-q", "origin", "+refs/heads/main:refs/heads/main")
            context.mkdir()
            archive = subprocess.run(["git", "--git-dir", str(plain_clone), "archive", event.after, "app"],
                                     check=True, capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(context)], input=archive, check=True)
            fetching = time.perf_counter() - began
            fetches.append(fetching)
            return fetching + direct_build(fetched_state, choice.driver, context / "app",
                                           f"{registry.host}/bench/fetched:r{n}")

        say("warm-up round (pulls the base image into each storage)")
        fetches: list[float] = []
        shipline_round(0)
        stepped_round(0)
        annotated_round(0)
        direct_round(0)
        labelled_round(0)
        fetched_round(0)
        ship, stepped, annotated, direct, labelled, fetched = [], [], [], [], [], []
        for n in range(1, rounds + 1):
            order = [(ship, shipline_round), (stepped, stepped_round), (annotated, annotated_round),
                     (direct, direct_round), (labelled, labelled_round), (fetched, fetched_round)]
            for bucket, fn in order[n % 6:] + order[:n % 6]:  # each side goes first in turn
                bucket.append(fn(n))
            say(f"round {n}: Shipline {ship[-1]:.2f} s, Shipline (keys_at_push: false) {stepped[-1]:.2f} s, "
                f"Shipline (annotations) {annotated[-1]:.2f} s, "
                f"direct {direct[-1]:.2f} s, direct + LABEL {labelled[-1]:.2f} s, "
                f"fetch + export + direct {fetched[-1]:.2f} s")
        phases = profile_phases(lambda: shipline_round(rounds + 1))

        docs = []
        for n in range(rounds + 3):
            event = app.push("docs/index.md", f"# Docs, edit {n}\n")
            began = time.perf_counter()
            report = build_push(repo, event, settings=settings, registries=registries, state_dir=ship_state)
            docs.append(time.perf_counter() - began)
            if report.images or not report.nothing_to_build_reason:
                raise RuntimeError(f"a docs-only push built something: {report.to_dict()}")
        reason = report.nothing_to_build_reason
        say(f"docs-only pushes: {', '.join(f'{d * 1000:.0f}' for d in docs)} ms")
        service = service_sized(built, choice.driver, rounds)
        fetch = fetch_floor(app, root / "floor", rounds)
        say("{describe} source step: Shipline's mirror against git fetch --prune")
        described = describe_fetch(built.app_repo({"app/index.html": "<h1>seed</h1>\n"}, name="tagged"),
                                   root / "describe", rounds)
        say("own steps with the git server and the registry behind toxiproxy latency")
        remote = remote_rounds(built, choice.driver, rounds)
    s, d, a, u = median(ship), median(direct), median(annotated), median(stepped)
    section.row(f"build + push, median ({choice.driver}), OCI keys as labels (default)", ms(s),
                baseline=f"{ms(d)} (`buildah bud` + `push`, {choice.driver})", ratio=f"{s / d:.3f}×",
                target=f"≤ {TARGET_RATIO}×", met=s / d <= TARGET_RATIO)
    section.row(f"build + push, OCI labels set while pushing (`shipline-push`, default) vs as a `LABEL` build step "
                f"({choice.driver})", ms(s), baseline=f"{ms(u)} (`build.keys_at_push: false`)", ratio=f"{s / u:.3f}×")
    section.row(f"build + push, median ({choice.driver}), OCI keys as annotations (`oci_metadata: annotations`)",
                ms(a), baseline=f"{ms(d)} (`buildah bud` + `push`, {choice.driver})", ratio=f"{a / d:.3f}×",
                target=f"≤ {TARGET_RATIO}×", met=a / d <= TARGET_RATIO)
    fet = median(fetched)
    section.row(f"build + push, OCI keys as annotations, vs a plain pipeline that fetches its source "
                f"({choice.driver})", ms(a),
                baseline=f"{ms(fet)} (`git fetch` + `git archive` + `buildah bud` + `push`)", ratio=f"{a / fet:.3f}×")
    lab = median(labelled)
    section.row(f"what a `LABEL` step costs plain buildah ({choice.driver})", ms(lab),
                baseline=f"{ms(d)} (`buildah bud` + `push`, the Dockerfile alone)", ratio=f"{lab / d:.3f}×")
    sv_s, sv_a, sv_d = median(service.ship), median(service.stepped), median(service.direct)
    for what, value in (("OCI labels set while pushing (default)", sv_s), ("OCI labels as a `LABEL` step", sv_a)):
        section.row(f"service-sized build + push ({service.files} Python files on the Debian base, `compileall`), "
                    f"median ({choice.driver}), {what}", ms(value),
                    baseline=f"{ms(sv_d)} (`buildah bud` + `push`, {choice.driver})", ratio=f"{value / sv_d:.3f}×")
    fm, fr = median(fetch.mirror), median(fetch.request)
    allowance = d * (TARGET_RATIO - 1)  # what the target leaves for everything Shipline adds
    section.row("source fetch of the pushed commit: Shipline's mirror fetch vs one protocol v2 request "
                "(the least a builder that fetches pays)", ms(fm), baseline=f"{ms(fr)} (one request, "
                f"{fr / d * 100:.1f}% of the plain build)", ratio=f"{fm / fr:.2f}×")
    dm, dg = median(described.mirror), median(described.git)
    section.row(f"source fetch of a `{{describe}}` build ({described.tags} tags and more): Shipline's mirror "
                "(`ls-refs` beside the one fetch request) vs `git fetch --prune`", ms(dm),
                baseline=f"{ms(dg)} (`git fetch --prune` of a `--mirror` clone: what Shipline ran before)",
                ratio=f"{dm / dg:.2f}×")
    ro, rr = median(remote.own), median(remote.request)
    section.row(f"Shipline's own steps per build (all but `bud` and `push`), git server and registry "
                f"{remote.latency_ms} ms away each way (toxiproxy)", ms(ro),
                baseline=f"{ms(rr)} (one fetch request through the same proxy: the floor)", ratio=f"{ro / rr:.2f}×")
    docs_p50 = median(docs)
    section.row("docs-only push: work done (median)", ms(docs_p50), target="no build, ≤ 100 ms",
                met=docs_p50 <= 0.1)
    own = sum(v for k, v in phases.items() if not k.startswith("buildah"))
    split = {side: {step: median(v) for step, v in steps.items()} for side, steps in splits.items()}
    section.data = {"split": split, "phases": phases, "ship": ship, "stepped": stepped,
                    "annotated": annotated, "direct": direct,
                    "labelled": labelled, "fetched": fetched, "plain_fetch": fetches, "driver": choice.driver,
                    "service": asdict(service), "fetch": asdict(fetch), "describe": asdict(described),
                    "remote": asdict(remote)}
    section.facts += [
        f"Storage driver, every side: {choice.driver} (Shipline's `auto`: {choice.reason}).",
        f"{rounds} rounds after a warm-up, each side going first in turn. Shipline rounds: "
        + ", ".join(f"{x:.2f}" for x in ship) + " s; Shipline (`keys_at_push: false`): "
        + ", ".join(f"{x:.2f}" for x in stepped) + " s; Shipline (annotations): "
        + ", ".join(f"{x:.2f}" for x in annotated) + " s; direct: " + ", ".join(f"{x:.2f}" for x in direct)
        + " s; direct + `LABEL`: " + ", ".join(f"{x:.2f}" for x in labelled)
        + " s; fetch + export + direct: " + ", ".join(f"{x:.2f}" for x in fetched)
        + f" s (its fetch + export alone: median {median(fetches) * 1000:.0f} ms). "
        f"Overhead {(s / d - 1) * 100:+.1f}% of the plain median; with annotations "
        f"{(a / d - 1) * 100:+.1f}%; with the labels as a `LABEL` step {(u / d - 1) * 100:+.1f}% (that step "
        f"costs plain buildah {(lab / d - 1) * 100:+.1f}%).",
        "Dockerfile: FROM the stack's busybox base, COPY a changed file, RUN, CMD; every side uses "
        f"`--root/--runroot` storage, `--storage-driver {choice.driver}`, `bud --isolation chroot --layers "
        "--force-rm`, `push --tls-verify=false --digestfile`. Shipline's sides also fetch their mirror (tags "
        "`{short_sha}`: no `{describe}`, so only the pushed commit is fetched), ping the registry (beside "
        "the fetch), diff the push, compute the content key (beside the diff), move the image's kept checkout "
        "of its context to the commit, add the three OCI keys (while pushing, `shipline-push` in place of "
        "`buildah push`: into the config, or the manifest for annotations; with `keys_at_push: false`, one "
        "`LABEL` step) and record the build. `bud` starts before the fetch (the push names the image's "
        "file, and its kept checkout exists) and reads the Dockerfile from a FIFO once the checkout is "
        "moved (`handlers/build/prestart.py`).",
        "The same rounds timed apart (medians): `buildah bud` / `push` "
        + split_text(split, {"ship": s, "stepped": u, "annotated": a, "direct": d})
        + " (the rest is the median total minus the two: Shipline's own steps; for plain, next to nothing; a "
        "`bud` started before the fetch is timed from when it gets its Dockerfile, so its start-up, which ran "
        "beside Shipline's steps, is in neither part).",
        "Profile of one more Shipline round (cProfile, cumulative): "
        + ", ".join(f"{label} {v * 1000:.0f} ms" for label, v in phases.items())
        + f"; Shipline's own steps {own * 1000:.0f} ms.",
        f"Service-sized build: `FROM` the stack's Debian bookworm base, `COPY` of {service.files} Python files "
        f"(this repository's {' and '.join(f'`{t}/`' for t in SERVICE_SOURCES)}), `RUN python3 -m compileall`, "
        "`CMD`; each round appends a line to one of the files. "
        f"{len(service.direct)} rounds after a warm-up, each side going first in turn: Shipline (labels) "
        + ", ".join(f"{x:.2f}" for x in service.ship) + " s; Shipline (labels, `keys_at_push: false`) "
        + ", ".join(f"{x:.2f}" for x in service.stepped) + " s; plain "
        + ", ".join(f"{x:.2f}" for x in service.direct)
        + " s. `buildah bud` / `push` medians: "
        + split_text(service.split, {"ship": sv_s, "stepped": sv_a, "direct": sv_d}) + ".",
        "Per-round ratios (a round runs every side back to back, so a machine that drifts between rounds "
        "moves all of them), median [min–max]: " + "; ".join(
            f"{name} {paired(mine, theirs)}" for name, mine, theirs in (
                ("Shipline (labels) / plain", ship, direct),
                ("Shipline (labels) / the same with `keys_at_push: false`", ship, stepped),
                ("Shipline (annotations) / plain", annotated, direct),
                ("Shipline (annotations) / fetch + export + plain", annotated, fetched),
                ("plain + `LABEL` / plain", labelled, direct),
                ("service-sized, Shipline (labels) / plain", service.ship, service.direct),
                ("service-sized, Shipline (labels, `keys_at_push: false`) / plain", service.stepped,
                 service.direct))) + ".",
        f"Source fetch, {len(fetch.mirror)} rounds after a warm-up, each a one-line push, each way going first "
        "in turn: Shipline's mirror fetch (`handlers/build/packfetch.py`: one protocol v2 `fetch` request, "
        "the pack streamed into `git unpack-objects --strict`, the ref written by GitPython) "
        + ", ".join(f"{x * 1000:.0f}" for x in fetch.mirror) + " ms; one protocol v2 `fetch` request for the "
        "same commit from a client kept across rounds (no client process, nothing written: the floor of any "
        "builder that fetches) " + ", ".join(f"{x * 1000:.0f}" for x in fetch.request) + " ms. The build "
        f"target allows {allowance * 1000:.0f} ms ({(TARGET_RATIO - 1) * 100:.0f} % of the plain median) for "
        f"everything Shipline adds; the floor alone takes {fr / allowance * 100:.0f} % of that, Shipline's fetch "
        f"{fm / allowance * 100:.0f} %.",
        f"`{{describe}}` source step, {len(described.mirror)} rounds after a warm-up on a repository with "
        f"{described.tags} annotated release tags, a one-line push each round and a new tag every fifth, each way "
        "going first in turn, each checked by `git describe` naming the newest tag: Shipline's mirror (`ls-refs` "
        "beside the commit's fetch request, a second fetch for new tags' objects, tags moved and pruned by one "
        "`git update-ref`) " + ", ".join(f"{x * 1000:.0f}" for x in described.mirror) + " ms; `git fetch --prune` "
        "of a `--mirror` clone " + ", ".join(f"{x * 1000:.0f}" for x in described.git) + " ms.",
        f"Own steps on a slower network: toxiproxy `latency` toxics of {remote.latency_ms} ms on both streams "
        "of the git server's and the registry's connections (so about "
        f"{2 * remote.latency_ms} ms per round trip), {len(remote.own)} rounds after a warm-up, the OCI keys "
        "as labels: Shipline's total minus its `bud` and `push` "
        + ", ".join(f"{x * 1000:.0f}" for x in remote.own) + " ms; one v2 fetch request for the same commit "
        "through the same proxy " + ", ".join(f"{x * 1000:.0f}" for x in remote.request) + " ms. The registry "
        "ping runs beside the fetch, on a connection kept per registry; toxiproxy delays data, not the TCP "
        "handshake, and this registry speaks plain HTTP, so what a new connection per ping would cost on a real "
        "(TLS) registry does not show here (measured apart: 86 against 22 ms a ping at this latency).",
        f"Docs-only pushes ({len(docs)}): " + ", ".join(f"{x * 1000:.0f}" for x in docs)
        + f" ms; outcome: \u201c{reason}\u201d (mirror fetch and diff included).",
    ]
    return section
