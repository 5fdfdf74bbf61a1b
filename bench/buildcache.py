"""Build cache: a build after a long history of builds, with Shipline's storage pruned to
``build.cache_keep`` against plain buildah on the same history left in place.

buildah's ``--layers`` cache lookup walks every image in its storage for every step, so a storage
that only grows makes each build slower than the last. Three storages get the same Dockerfile:
Shipline's and an unpruned one each receive the same number of earlier builds (plain ``buildah
bud``, one after the other alternately; each a distinct ``COPY``), then Shipline's is pruned as
its worker does (``BuildahBuilder.prune``, timed), and rounds alternate between Shipline's
``build_push``, plain ``bud`` + ``push`` on the unpruned storage, and plain ``bud`` + ``push`` on a
fresh storage (the reference: no history at all). Image counts are what ``buildah images -a``
lists, sizes what ``du`` says.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from bench.build import DOCKERFILE, build_stack, buildah, direct_build
from bench.common import Section, median, ms, run, say


def image_count(storage: Path, driver: str) -> int:
    out = subprocess.run([*buildah(storage, driver), "images", "-a", "-q"], check=True, capture_output=True,
                         text=True).stdout
    return len(out.split())


def disk_mb(storage: Path) -> float:
    out = subprocess.run(["du", "-sk", str(storage / "buildah" / "storage")], check=True, capture_output=True,
                         text=True).stdout
    return int(out.split()[0]) / 1024


def bench(quick: bool = False) -> Section:
    from handlers.build.builder import BuildahBuilder
    from handlers.build.run import build_push
    from handlers.build.storage import storage_driver
    from handlers.settings import BuildSettings, RegistryConfig, RepoConfig

    history, rounds = (20, 3) if quick else (150, 7)
    section = Section("buildcache", "Build cache")
    with build_stack("buildcache") as built:
        root, registry, base = built.root, built.registry, built.base
        app = built.app_repo({"app/Dockerfile": DOCKERFILE.format(base=base), "app/index.html": "<h1>seed</h1>\n"})
        url = app.url
        image = f"{registry.host}/bench/app"
        repo = RepoConfig.model_validate({"name": "app", "url": url, "branches": ["main"], "images": [
            {"name": image, "context": "app", "tags": ["{short_sha}"]}]})
        settings, registries = BuildSettings(), [RegistryConfig(host=registry.host, insecure=True)]
        ship_state, kept_state, fresh_state = root / "shipline", root / "unpruned", root / "fresh"
        driver = storage_driver(settings.storage_driver, ship_state / "buildah" / "storage").driver
        builder = BuildahBuilder(state_dir=ship_state, registries=registries)
        context = root / "history"
        context.mkdir()
        (context / "Dockerfile").write_text(DOCKERFILE.format(base=base))

        say(f"{history} earlier builds into Shipline's and the unpruned storage ({driver})")
        for n in range(history):
            for side, state, name in ((0, ship_state, image), (1, kept_state, f"{registry.host}/bench/kept")):
                (context / "index.html").write_text(f"<h1>history {n} {side}</h1>\n")
                argv = [*buildah(state, driver), "bud", "--isolation", "chroot", "--layers", "--force-rm",
                        "--tls-verify=false", "-f", str(context / "Dockerfile"), "-t", f"{name}:h{n}", str(context)]
                try:
                    run(argv)
                except RuntimeError as exc:  # the history is setup, not a measurement: once more
                    say(f"history build {n} failed, once more: {str(exc).splitlines()[-2:]}")
                    run(argv)
        counts_before = image_count(ship_state, driver), image_count(kept_state, driver)
        disk_before = disk_mb(ship_state), disk_mb(kept_state)
        began = time.perf_counter()
        catch_up = builder.prune([image], settings.cache_keep or 0)
        assert catch_up is not None, "nothing else uses this storage"
        catch_up_s = time.perf_counter() - began
        say(f"catch-up prune: {catch_up.before} → {catch_up.after} images in {catch_up_s:.1f} s")

        def shipline_round(n: int) -> float:
            event = app.push("app/index.html", f"<h1>round {n}</h1>\n")
            began = time.perf_counter()
            report = build_push(repo, event, settings=settings, registries=registries, state_dir=ship_state)
            elapsed = time.perf_counter() - began
            if [i.status for i in report.images] != ["built"]:
                raise RuntimeError(f"build_push did not build: {report.to_dict()}")
            return elapsed

        def plain_round(state: Path, side: str, n: int) -> float:
            ctx = root / f"{side}-context"
            ctx.mkdir(exist_ok=True)
            (ctx / "Dockerfile").write_text(DOCKERFILE.format(base=base))
            (ctx / "index.html").write_text(f"<h1>{side} round {n}</h1>\n")
            return direct_build(state, driver, ctx, f"{registry.host}/bench/{side}:r{n}")

        steady: list[float] = []
        shipline_round(0)
        plain_round(kept_state, "kept", 0)
        plain_round(fresh_state, "fresh", 0)
        ship, kept, fresh = [], [], []
        for n in range(1, rounds + 1):
            order = [(ship, lambda n=n: shipline_round(n)), (kept, lambda n=n: plain_round(kept_state, "kept", n)),
                     (fresh, lambda n=n: plain_round(fresh_state, "fresh", n))]
            for bucket, fn in order[n % 3:] + order[:n % 3]:
                bucket.append(fn())
            began = time.perf_counter()
            builder.prune([image], settings.cache_keep or 0)  # the worker's tick, between builds
            steady.append(time.perf_counter() - began)
            say(f"round {n}: Shipline {ship[-1]:.2f} s, unpruned {kept[-1]:.2f} s, fresh {fresh[-1]:.2f} s")
        counts_after = image_count(ship_state, driver), image_count(kept_state, driver)
        disk_after = disk_mb(ship_state), disk_mb(kept_state)

    s, k, f = median(ship), median(kept), median(fresh)
    section.row(f"build + push after {history} earlier builds: Shipline (pruned to `cache_keep: "
                f"{settings.cache_keep}`) vs plain buildah on the unpruned storage ({driver})", ms(s),
                baseline=f"{ms(k)} (`buildah bud` + `push`, {history + rounds + 1} builds kept)", ratio=f"{s / k:.3f}×")
    section.row(f"build + push after {history} earlier builds, Shipline vs plain buildah on a fresh storage "
                f"({driver})", ms(s), baseline=f"{ms(f)} (`buildah bud` + `push`, no history)", ratio=f"{s / f:.3f}×")
    section.row(f"images in the buildah storage after {history + rounds + 1} builds (`buildah images -a`)",
                str(counts_after[0]), baseline=f"{counts_after[1]} (unpruned)",
                ratio=f"{counts_after[0] / counts_after[1]:.3f}×")
    section.row("prune between two builds (the worker's tick), median", ms(median(steady)))
    section.data = {"ship": ship, "kept": kept, "fresh": fresh, "steady_prune": steady, "catch_up_s": catch_up_s,
                    "counts_before": counts_before, "counts_after": counts_after, "disk_before_mb": disk_before,
                    "disk_after_mb": disk_after, "driver": driver}
    section.facts += [
        f"Storage driver: {driver}. History: {history} plain `buildah bud` builds of the build section's Dockerfile "
        f"(a distinct `COPY` each) into Shipline's and the unpruned storage: {counts_before[0]} and "
        f"{counts_before[1]} images, {disk_before[0]:.1f} and {disk_before[1]:.1f} MB.",
        f"Catch-up prune of Shipline's storage (keep {settings.cache_keep}): {catch_up.before} → {catch_up.after} "
        f"images in {catch_up_s:.1f} s (`buildah rmi` of {catch_up.before - catch_up.after} images, once).",
        f"{rounds} rounds after a warm-up, each side going first in turn, Shipline's storage pruned after each "
        "(as the worker's loop does while no build runs): Shipline " + ", ".join(f"{x:.2f}" for x in ship)
        + " s; plain, unpruned storage " + ", ".join(f"{x:.2f}" for x in kept) + " s; plain, fresh storage "
        + ", ".join(f"{x:.2f}" for x in fresh) + " s; prune " + ", ".join(f"{x * 1000:.0f}" for x in steady) + " ms.",
        f"At the end: Shipline's storage {counts_after[0]} images, {disk_after[0]:.1f} MB; the unpruned one "
        f"{counts_after[1]} images, {disk_after[1]:.1f} MB.",
    ]
    return section
