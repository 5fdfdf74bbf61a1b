"""The OCI labels as one LABEL instruction (or flags where appending is not certainly right), and
the storage driver choice."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from handlers.build.builder import BuildahBuilder, BuildSpec
from handlers.build.labels import with_labels
from handlers.build.storage import overlay_problem, storage_driver

LABELS = {"org.opencontainers.image.revision": "abc", "org.opencontainers.image.source": "https://x/$HOME\"q"}


def test_labels_become_one_instruction_at_the_end() -> None:
    text = with_labels("FROM base\nRUN make\n", LABELS)
    assert text == ('FROM base\nRUN make\nLABEL "org.opencontainers.image.revision"="abc" '
                    '"org.opencontainers.image.source"="https://x/\\$HOME\\"q"\n')


@pytest.mark.parametrize(("dockerfile", "target", "appended"), [
    ("FROM a AS build\nRUN x\nFROM b AS final\nCOPY --from=build /x /x", "final", True),
    ("FROM a AS build\nRUN x\nFROM b AS final\n", "build", False),
    ("FROM a AS build\nRUN x\nFROM b\n", "1", True),
    ("FROM a\nRUN x && \\\n", None, False),
    ("FROM a\nRUN x \\\n  # a comment inside the continuation\n  && y\n", None, True),
    ("# escape=`\nFROM a\nRUN x `\n", None, False),
])
def test_appended_only_where_certainly_right(dockerfile: str, target: str | None, appended: bool) -> None:
    assert (with_labels(dockerfile, {"k": "v"}, target) is not None) is appended


def test_the_labelled_copy_lives_outside_the_context(tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM base\nCOPY . /app\n")
    (context / "Dockerfile.dockerignore").write_text("secret\n")
    builder = BuildahBuilder(state_dir=tmp_path / "state", registries=[], storage_driver="vfs")
    spec = BuildSpec(image="reg.example/app", tags=("1",), context=context, dockerfile=context / "Dockerfile",
                     timeout_seconds=5, labels={"k": "v"})
    with builder._labelled(spec) as labelled:
        assert labelled is not None and not labelled.is_relative_to(context)
        assert labelled.read_text().endswith('LABEL "k"="v"\n')
        assert labelled.with_name("Dockerfile.dockerignore").read_text() == "secret\n"
        argv = builder.bud_argv(spec, None, labelled)
    assert "--label" not in argv and argv[argv.index("-f") + 1] == str(labelled)
    assert sorted(p.name for p in context.iterdir()) == ["Dockerfile", "Dockerfile.dockerignore"]
    flagged = builder.bud_argv(spec)
    assert flagged[flagged.index("--label") + 1] == "k=v"


def test_auto_picks_overlay_exactly_when_a_mount_works(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="shipline.build"):
        choice = storage_driver("auto", tmp_path / "storage")
    works = overlay_problem(tmp_path / "again") is None
    assert choice.driver == ("overlay" if works else "vfs")
    assert f"buildah storage driver {choice.driver}" in caplog.text
    assert not (tmp_path / "storage" / "overlay-probe").exists()
    assert storage_driver("vfs", tmp_path / "storage").driver == "vfs"
