"""Which images a set of changed paths triggers (pure: no git, no stack)."""

from __future__ import annotations

import pytest

from handlers.build.changes import decide, default_paths, dockerfile_path, matches
from handlers.settings import ImageBuildConfig


@pytest.mark.parametrize(("pattern", "path", "expected"), [
    ("frontend/**", "frontend/Dockerfile", True),
    ("frontend/**", "frontend/src/app/main.js", True),
    ("frontend/**", "frontend-old/x", False),
    ("frontend/", "frontend/a/b", True),
    ("**", "anything/at/all", True),
    ("**/*.py", "app.py", True),
    ("**/*.py", "svc/pkg/app.py", True),
    ("**/*.py", "svc/pkg/app.pyc", False),
    ("src/*.go", "src/main.go", True),
    ("src/*.go", "src/cmd/main.go", False),
    ("src/**/test_*.py", "src/test_a.py", True),
    ("src/**/test_*.py", "src/a/b/test_a.py", True),
    ("docs/?.md", "docs/a.md", True),
    ("docs/?.md", "docs/ab.md", False),
    ("[!.]*", ".hidden", False),
    ("[abc]pi/**", "api/x", True),
    ("./backend/**", "backend/x", True),
    ("a.b", "axb", False),
])
def test_glob_grammar(pattern: str, path: str, expected: bool) -> None:
    assert matches(path, [pattern]) is expected


def image(name: str, **kwargs: object) -> ImageBuildConfig:
    return ImageBuildConfig(name=f"reg.example/{name}", **kwargs)  # type: ignore[arg-type]


def test_default_paths_are_the_context_and_its_dockerfile() -> None:
    assert default_paths(image("a", context="frontend")) == ["frontend/**", "frontend/Dockerfile"]
    assert default_paths(image("a")) == ["**", "Dockerfile"]
    assert default_paths(image("a", context="svc", dockerfile="docker/svc.Dockerfile")) == [
        "svc/**", "docker/svc.Dockerfile"]
    assert default_paths(image("a", context="./x/")) == ["x/**", "x/Dockerfile"]
    assert dockerfile_path(image("a", context=".", dockerfile="./build/Dockerfile")) == "build/Dockerfile"


IMAGES = [
    image("frontend", context="frontend"),
    image("backend", context="backend", dockerfile="docker/backend.Dockerfile"),
    image("worker", context="backend", paths=["backend/worker/**", "shared/**"]),
]


@pytest.mark.parametrize(("paths", "expected"), [
    (["frontend/index.html"], ("reg.example/frontend",)),
    (["docker/backend.Dockerfile"], ("reg.example/backend",)),
    (["backend/api.py"], ("reg.example/backend",)),
    (["backend/worker/run.py"], ("reg.example/backend", "reg.example/worker")),
    (["shared/lib.py", "frontend/a.js"], ("reg.example/frontend", "reg.example/worker")),
    (["docs/README.md"], ()),
])
def test_an_image_triggers_when_one_of_its_globs_matches(paths: list[str], expected: tuple[str, ...]) -> None:
    assert decide(IMAGES, paths).images == expected


def test_no_match_says_which_paths_changed() -> None:
    decision = decide(IMAGES, ["docs/README.md", "LICENSE"])
    assert decision.images == ()
    assert decision.reason == "no image's paths changed: docs/README.md, LICENSE"


def test_long_path_lists_are_shortened_in_the_reason() -> None:
    reason = decide(IMAGES, [f"docs/{i}.md" for i in range(8)]).reason
    assert reason.endswith("docs/4.md (+3 more)")
