"""Build: ``build_push`` of a small Dockerfile against ``buildah bud`` + ``buildah push`` run directly
(same storage flags, same isolation, same layer cache settings, same context change), and the
work ``build_push`` does for a docs-only push (no build).

Each round commits a change to the image's context (so neither side can reuse a cached layer for
the changed ``COPY`` and the ``RUN`` after it) and builds it both ways, alternating which goes first.
A warm-up round on each side pulls the base image into its storage first.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.common import Section, git, median, ms, run, say, started, state_dir

DOCKERFILE = """FROM {base}
COPY index.html /srv/index.html
RUN echo "built" > /srv/built.txt && wc -c /srv/index.html > /srv/size.txt
CMD ["httpd", "-f", "-p", "8080", "-h", "/srv"]
"""


def buildah(storage: Path) -> list[str]:
    """The flags ``BuildahBuilder`` uses: storage under ``<state>/buildah``, vfs."""
    root = storage / "buildah"
    return ["buildah", "--root", str(root / "storage"), "--runroot", str(root / "run"), "--storage-driver", "vfs"]


def direct_build(storage: Path, context: Path, ref: str, labels: tuple[str, ...] = ()) -> float:
    began = time.perf_counter()
    flags = [arg for label in labels for arg in ("--label", label)]
    run([*buildah(storage), "bud", "--isolation", "chroot", "--layers", "--force-rm", "--tls-verify=false", *flags,
         "-f", str(context / "Dockerfile"), "-t", ref, str(context)])
    run([*buildah(storage), "push", "--tls-verify=false", "--digestfile", str(storage / "digest"), ref,
         f"docker://{ref}"])
    return time.perf_counter() - began


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
    from devstack.baseimage import build_base_image
    from devstack.gitrepos import GitServer
    from devstack.process import free_port
    from devstack.registry import Registry
    from handlers.build.run import build_push
    from handlers.settings import BuildSettings, RegistryConfig, RepoConfig

    rounds = 2 if quick else 5
    section = Section("build", "Build")
    with state_dir("build") as root:
        stack = root / "stack"
        registry, server = Registry(stack, free_port()), GitServer(stack, free_port())
        with started(registry, server):
            say("building the base image")
            base = build_base_image(stack, registry.host)
            url = server.create_repo("app")
            app = AppRepo(url, root / "app")
            git(root, "clone", "-q", url, str(app.work))
            app.seed({"app/Dockerfile": DOCKERFILE.format(base=base), "app/index.html": "<h1>seed</h1>\n",
                      "docs/index.md": "# Docs\n"})
            image = f"{registry.host}/bench/app"
            repo = RepoConfig.model_validate({"name": "app", "url": url, "branches": ["main"], "images": [
                {"name": image, "context": "app", "tags": ["{short_sha}"]}]})
            settings, registries = BuildSettings(), [RegistryConfig(host=registry.host, insecure=True)]
            ship_state, direct_state = root / "shipline", root / "direct"

            def shipline_round(n: int) -> float:
                event = app.push("app/index.html", f"<h1>round {n}</h1>\n")
                began = time.perf_counter()
                report = build_push(repo, event, settings=settings, registries=registries, state_dir=ship_state)
                elapsed = time.perf_counter() - began
                status = [i.status for i in report.images]
                if status != ["built"]:
                    raise RuntimeError(f"build_push did not build: {report.to_dict()}")
                return elapsed

            def direct_round(n: int, labels: tuple[str, ...] = ()) -> float:
                context = root / "direct-context"
                context.mkdir(exist_ok=True)
                (context / "Dockerfile").write_text(DOCKERFILE.format(base=base))
                (context / "index.html").write_text(f"<h1>direct round {n} {len(labels)}</h1>\n")
                return direct_build(direct_state, context, f"{registry.host}/bench/direct:r{n}", labels)

            labelled = ("org.opencontainers.image.revision=0123456789abcdef", f"org.opencontainers.image.source={url}",
                        "org.opencontainers.image.created=2025-01-01T00:00:00Z")
            say("warm-up round (pulls the base image into each storage)")
            shipline_round(0)
            direct_round(0)
            ship, direct, direct_labels = [], [], []
            for n in range(1, rounds + 1):
                order = [(ship, shipline_round), (direct, direct_round),
                         (direct_labels, lambda n: direct_round(n, labelled))]
                for bucket, fn in order if n % 2 else reversed(order):
                    bucket.append(fn(n))
                say(f"round {n}: Shipline {ship[-1]:.2f} s, direct {direct[-1]:.2f} s, "
                    f"direct with Shipline's 3 labels {direct_labels[-1]:.2f} s")

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
    s, d = median(ship), median(direct)
    overhead = s / d - 1
    section.row("build + push, median", ms(s), baseline=f"{ms(d)} (`buildah bud` + `push`)", ratio=f"{s / d:.3f}×",
                target="overhead ≤ 5%", met=overhead <= 0.05)
    dl = median(direct_labels)
    section.row("same, baseline given Shipline's 3 `--label`s", ms(s), baseline=ms(dl), ratio=f"{s / dl:.3f}×")
    docs_p50 = median(docs)
    section.row("docs-only push: work done (median)", ms(docs_p50), target="no build, ≤ 100 ms",
                met=docs_p50 <= 0.1)
    section.facts += [
        f"{rounds} rounds after a warm-up, alternating which side goes first. Shipline rounds: "
        + ", ".join(f"{x:.2f}" for x in ship) + " s; direct: " + ", ".join(f"{x:.2f}" for x in direct)
        + " s; direct with the 3 OCI labels Shipline adds: " + ", ".join(f"{x:.2f}" for x in direct_labels)
        + f" s. Overhead {overhead * 100:+.1f}% of the median ({(s / dl - 1) * 100:+.1f}% against the labelled "
        "direct build).",
        "Dockerfile: FROM the stack's busybox base, COPY a changed file, RUN, CMD; both sides use "
        "`--root/--runroot` storage, `--storage-driver vfs`, `bud --isolation chroot --layers --force-rm`, "
        "`push --tls-verify=false --digestfile`. Shipline's side also fetches its mirror, diffs the push, "
        "computes the content key, pings the registry, exports the context and records the build.",
        f"Docs-only pushes ({len(docs)}): " + ", ".join(f"{x * 1000:.0f}" for x in docs)
        + f" ms; outcome: \u201c{reason}\u201d (mirror fetch and diff included).",
    ]
    return section
