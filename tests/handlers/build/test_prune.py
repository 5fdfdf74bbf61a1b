"""The build storage stays bounded: each image's newest builds and the layers they stand on stay,
the rest goes (``handlers.build.prune``), and never while a build is using the storage."""

from __future__ import annotations

import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devstack.stack import Stack
from handlers.build import prune
from handlers.build.builder import BuildahBuilder, BuildSpec, BuiltImage
from handlers.build.prune import StoredImage, plan
from tests.handlers.build.conftest import registries

BASE = "reg.example/base/busybox"
APP = "reg.example/shop/app"


def image(id_: str, top: str, *names: str, created: str = "2026-01-01T00:00:00Z") -> StoredImage:
    return StoredImage(id_, names, top, created)


def test_plan_keeps_the_newest_builds_with_their_chains_and_every_base() -> None:
    # layers: base ← copyN ← runN for builds 1..3; build 3 reuses build 2's COPY layer (a cache hit)
    parents: dict[str, str | None] = {"L-base": None, "L-copy1": "L-base", "L-run1": "L-copy1",
                                      "L-copy2": "L-base", "L-run2": "L-copy2", "L-run3": "L-copy2",
                                      "L-other": "L-base"}
    images = [
        image("base", "L-base", f"{BASE}:latest"),
        image("copy1", "L-copy1"), image("final1", "L-run1", f"{APP}:aaa1111", created="2026-01-01T00:00:01Z"),
        image("copy2", "L-copy2"), image("final2", "L-run2", f"{APP}:bbb2222", created="2026-01-01T00:00:02Z"),
        image("final3", "L-run3", f"{APP}:ccc3333", f"{APP}:main", created="2026-01-01T00:00:03Z"),
        image("failed-build-step", "L-other"),
    ]
    chosen = plan(images, parents, [APP], keep=2)
    assert chosen.names == (f"{APP}:aaa1111",)
    assert set(chosen.ids) == {"copy1", "failed-build-step"}
    assert chosen.kept == 4  # base, copy2 (under both kept builds), final2, final3


def test_plan_counts_each_repository_apart_and_removes_every_name_of_an_old_build() -> None:
    parents: dict[str, str | None] = {"L1": None, "L2": None, "L3": None}
    images = [image("a-old", "L1", "reg.example/shop/a:1", "reg.example/shop/a:v1.0.0", created="1"),
              image("a-new", "L2", "reg.example/shop/a:2", created="2"),
              image("b-only", "L3", "reg.example/shop/b:1", created="0")]
    chosen = plan(images, parents, ["reg.example/shop/a", "reg.example/shop/b"], keep=1)
    assert set(chosen.names) == {"reg.example/shop/a:1", "reg.example/shop/a:v1.0.0"} and chosen.ids == ()
    also_b = [*images[:2], image("b-new", "L3", "reg.example/shop/b:2", "reg.example/shop/a:0", created="0")]
    assert plan(also_b, parents, ["reg.example/shop/a", "reg.example/shop/b"], keep=1).names == (
        "reg.example/shop/a:1", "reg.example/shop/a:v1.0.0"), "the newest of b stays, though old as an a"


def test_the_newest_build_is_found_whatever_digits_its_time_has() -> None:
    """Go writes 01Z, 01.3Z and 01.25Z for three instants of one second: as text, 01Z sorts last."""
    images = [image("whole", "L1", f"{APP}:1", created="2026-01-01T00:00:01Z"),
              image("quarter", "L2", f"{APP}:2", created="2026-01-01T00:00:01.25Z"),
              image("newest", "L3", f"{APP}:3", created="2026-01-01T00:00:01.3Z")]
    chosen = plan(images, {"L1": None, "L2": None, "L3": None}, [APP], keep=1)
    assert sorted(chosen.names) == [f"{APP}:1", f"{APP}:2"]


def test_unreadable_storage_records_prune_nothing(tmp_path: Path) -> None:
    (tmp_path / "overlay-images").mkdir()
    (tmp_path / "overlay-images" / "images.json").write_text('{"not": "a list"}')
    with pytest.raises(prune.StorageUnreadable):
        prune.read_storage(tmp_path, "overlay")


def build(builder: BuildahBuilder, context: Path, stack: Stack, repository: str, n: int) -> BuiltImage:
    (context / "Dockerfile").write_text(f"FROM {stack.base_image}\nCOPY index.html /index.html\n"
                                        "RUN wc -c /index.html > /size.txt\n")
    (context / "index.html").write_text(f"<h1>build {n}</h1>\n")
    spec = BuildSpec(image=repository, tags=(f"b{n}",), context=context, dockerfile=context / "Dockerfile",
                     timeout_seconds=120)
    return builder.build(spec, log=context.parent / f"build-{n}.log", should_continue=lambda: True)


def stored(state_dir: Path, driver: str) -> list[str]:
    """What buildah itself lists: ``<id> <name>:<tag>`` per image (``<none>:<none>`` for a cached step)."""
    argv = ["buildah", "--root", str(state_dir / "buildah" / "storage"), "--runroot",
            str(state_dir / "buildah" / "run"), "--storage-driver", driver, "images", "-a", "--no-trunc",
            "--format", "{{.ID}} {{.Name}}:{{.Tag}}"]
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.split("\n")[:-1]


def test_prune_leaves_the_newest_builds_cached_and_the_old_ones_gone(stack: Stack, tmp_path: Path) -> None:
    builder = BuildahBuilder(state_dir=tmp_path / "state", registries=registries(stack))
    repository = f"{stack.registry.host}/t{uuid.uuid4().hex[:10]}/app"
    context = tmp_path / "context"
    context.mkdir()
    built = [build(builder, context, stack, repository, n) for n in range(4)]
    before = stored(builder.state_dir, builder.storage_driver)
    assert len(before) == 1 + 4 * 2  # the base, then per build its COPY step and its final image

    result = builder.prune([repository], keep=2)

    assert result is not None
    after = stored(builder.state_dir, builder.storage_driver)
    assert (result.before, result.after, result.error) == (9, 5, "")
    names = [line.split()[1] for line in after]
    assert sorted(n for n in names if n.startswith(repository)) == [f"{repository}:b2", f"{repository}:b3"]
    assert stack.base_image in names and names.count("<none>:<none>") == 2
    again = build(builder, context, stack, repository, 3)  # the newest build: every step from the cache
    assert again.digest == built[3].digest
    build(builder, context, stack, repository, 0)  # a pruned build: its steps run again
    assert "Using cache" not in (context.parent / "build-0.log").read_text()


def test_prune_waits_for_no_build_and_removes_nothing_while_one_runs(stack: Stack, tmp_path: Path) -> None:
    builder = BuildahBuilder(state_dir=tmp_path / "state", registries=registries(stack))
    repository = f"{stack.registry.host}/t{uuid.uuid4().hex[:10]}/app"
    context = tmp_path / "context"
    context.mkdir()
    for n in range(2):
        build(builder, context, stack, repository, n)
    with prune.storage_in_use(builder.state_dir / "buildah"):
        assert builder.prune([repository], keep=1) is None
        spared = builder.prune([repository], keep=1, busy_spare_seconds=3600)  # all made within the hour
        assert spared is not None and spared.busy and spared.before == spared.after == 5
        assert len(stored(builder.state_dir, builder.storage_driver)) == 5
    idle = builder.prune([repository], keep=1)
    assert idle is not None and (idle.busy, idle.after) == (False, 3)


def test_a_prune_while_builds_run_spares_what_is_younger_than_the_cutoff() -> None:
    parents: dict[str, str | None] = {"L-base": None, "L-a": "L-base", "L-b": "L-base", "L-c": "L-base"}
    images = [image("base", "L-base", f"{BASE}:latest"),
              image("old-final", "L-a", f"{APP}:a", created="2026-01-01T00:00:00.5Z"),
              image("new-final", "L-b", f"{APP}:b", created="2026-01-01T01:00:00Z"),
              image("running-step", "L-c", created="2026-01-01T02:00:00.123456789Z"),
              image("odd-clock", "L-c", created="2026-01-01T00:00:00+01:00")]
    assert plan(images, parents, [APP], keep=1).ids == ("running-step", "odd-clock")
    spared = plan(images, parents, [APP], keep=1, spare_since=datetime(2026, 1, 1, 1, 30, tzinfo=UTC))
    assert spared.names == (f"{APP}:a",) and spared.ids == (), "a running build's step and an unreadable time stay"
    assert plan(images, parents, [APP], keep=0, spare_since=datetime(2026, 1, 1, 0, 30, tzinfo=UTC)).names == (
        f"{APP}:a",)
