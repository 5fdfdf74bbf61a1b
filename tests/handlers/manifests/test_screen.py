"""The bump reads a git tree through the blob screen: it must find exactly what walking a checkout
finds (targets and warnings, in order), and read each unchanged blob only once."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from handlers.gitops import ManifestsRepo
from handlers.manifests import ImageUpdate, scan, scan_sources
from handlers.manifests.files import MAX_FILE_BYTES
from handlers.manifests.screen import ScreenIndex, tree_sources

APP = "registry.local/shop/app"
MARKERS = ["STAGING_IMAGE_TAG"]
FILES: dict[str, bytes] = {
    "b.yaml": b"image: registry.local/shop/app:1.0.0 # STAGING_IMAGE_TAG\n",
    "a/z.yml": b"tag: 1.0.0 # STAGING_IMAGE_TAG\n",
    "a/plain.yaml": b"kind: ConfigMap\n",
    "a/deep/kustomization.yaml": b"images:\n  - name: registry.local/shop/app\n    newTag: 1.0.0\n",
    "a/deep/values.yaml": b"images: [x]\n",
    "latin1.yaml": "name: caf\xe9\n".encode("latin-1"),
    "big.yaml": b"# STAGING_IMAGE_TAG\n" + b"x: y\n" * (MAX_FILE_BYTES // 5 + 1),
    "templates/t.yaml": b"image: app:{{ v }} # STAGING_IMAGE_TAG\n",
    "broken.yaml": b"a: [1, 2 # STAGING_IMAGE_TAG\n",
    "notes.txt": b"tag: 1.0.0 # STAGING_IMAGE_TAG\n",
    "flux.yaml": b'image: registry.local/shop/app:1.0.0 # {"$imagepolicy": "ns:app"}\n',
}


def git(cwd: Path, *args: str) -> str:
    ident = ["-c", "user.name=T", "-c", "user.email=t@example.test", "-c", "commit.gpgsign=false"]
    return subprocess.run(["git", *ident, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def seed(tmp_path: Path) -> Path:
    work = tmp_path / "seed"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    for rel, data in FILES.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_bytes(data)
    os.symlink("b.yaml", work / "link.yaml")
    git(work, "add", "-A")
    git(work, "commit", "-qm", "seed")
    return work


def from_tree(work: Path, clone: Path, reads: list[list[str]] | None = None) -> tuple[object, object]:
    repo = ManifestsRepo(str(work), "main", clone)
    _, head = repo.fetch_head()
    index = ScreenIndex(clone / ".git" / "screen.txt", MARKERS)

    def read(oids: list[str]) -> dict[str, bytes]:
        if reads is not None and oids:
            reads.append(oids)
        return repo.read_blobs(oids)

    found = scan_sources(tree_sources(repo.tree(head), index, read, lambda rel: True), updates(), MARKERS,
                         known_images=[APP])
    return found.targets, found.warnings


def updates() -> list[ImageUpdate]:
    return [ImageUpdate(APP, "2.0.0", policy_name="ns:app")]


def test_the_tree_gives_what_walking_the_checkout_gives(seed: Path, tmp_path: Path) -> None:
    walked = scan(seed, updates(), MARKERS, known_images=[APP])
    targets, warnings = from_tree(seed, tmp_path / "clone")
    assert targets == walked.targets and warnings == walked.warnings
    assert {t.file for t in walked.targets} == {"b.yaml", "a/z.yml", "a/deep/kustomization.yaml", "flux.yaml"}
    assert any("not UTF-8" in w for w in warnings) and any("larger than" in w for w in warnings)


def test_an_unchanged_blob_is_read_once(seed: Path, tmp_path: Path) -> None:
    first: list[list[str]] = []
    from_tree(seed, tmp_path / "clone", first)
    (seed / "a" / "plain.yaml").write_text("kind: Secret\n")
    git(seed, "commit", "-qam", "one file")
    again: list[list[str]] = []
    targets, warnings = from_tree(seed, tmp_path / "clone", again)
    new_blob = git(seed, "rev-parse", "HEAD:a/plain.yaml").strip()
    wanted = {git(seed, "rev-parse", f"HEAD:{f}").strip() for f in ("b.yaml", "a/z.yml", "a/deep/kustomization.yaml",
                                                                    "templates/t.yaml", "broken.yaml", "flux.yaml")}
    assert sum(len(batch) for batch in first) > len(wanted)
    assert [set(batch) for batch in again] == [{new_blob}, wanted]
    walked = scan(seed, updates(), MARKERS, known_images=[APP])
    assert (targets, warnings) == (walked.targets, walked.warnings)


def test_a_changed_marker_set_screens_again(seed: Path, tmp_path: Path) -> None:
    path = tmp_path / "screen.txt"
    index = ScreenIndex(path, MARKERS)
    index.learn({"a" * 40: b"x # STAGING_IMAGE_TAG"})
    index.save({"a" * 40})
    assert ScreenIndex(path, MARKERS).known == {"a" * 40: "m"}
    assert ScreenIndex(path, ["PRODUCTION_IMAGE_TAG"]).known == {}
