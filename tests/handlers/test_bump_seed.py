"""bump() on the seed's kluctl monorepo shape, through a real push: no extra markers, each
`services/<name>/config/staging.yaml` belongs to the image named `<name>`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from handlers.bump import bump
from handlers.manifests import ImageUpdate
from handlers.settings import EnvImageConfig, EnvironmentConfig, GitLocation, PolicyConfig

SEED = Path(__file__).resolve().parents[1] / "golden" / "bump" / "seed-monorepo-services" / "original"
REGISTRY = "registry.local:5000/shop"
POLICY = PolicyConfig(semver=">=1.0.0-0", prereleases=True)


def git(cwd: Path, *args: str) -> str:
    ident = ["-c", "user.name=Seed", "-c", "user.email=seed@example.test", "-c", "commit.gpgsign=false"]
    return subprocess.run(["git", *ident, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    bare, work = tmp_path / "remote.git", tmp_path / "seed"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    shutil.copytree(SEED, work)
    (work / "services" / "backend" / "config" / "staging.yaml").chmod(0o755)
    git(work, "init", "-q", "-b", "main")
    git(work, "add", "-A")
    git(work, "commit", "-qm", "seed")
    git(work, "push", "-q", str(bare), "main")
    return bare


def environment(remote: Path, **image: object) -> EnvironmentConfig:
    images = [EnvImageConfig(image=f"{REGISTRY}/{name}", policy=POLICY, **image) for name in ("frontend", "backend")]
    return EnvironmentConfig(name="staging", git=GitLocation(url=str(remote)), markers=["STAGING_IMAGE_TAG"],
                             images=images, commit_author="Ship Bot <bot@example.test>")


def show(remote: Path, path: str) -> str:
    return git(remote, "show", f"main:{path}")


def test_a_release_sets_every_service_marker_to_its_tag(remote: Path, tmp_path: Path) -> None:
    tag = "1.1.0-3-g9c1d2e4"
    updates = [ImageUpdate(f"{REGISTRY}/{name}", tag) for name in ("frontend", "backend")]
    result = bump(environment(remote), updates, ["evt-1"], tmp_path / "state")
    assert result.commit == git(remote, "rev-parse", "main").strip()
    assert sorted(c.file for c in result.changes) == ["services/backend/config/staging.yaml",
                                                      "services/frontend/config/staging.yaml"]
    assert f"version: {tag} # STAGING_IMAGE_TAG\n" in show(remote, "services/frontend/config/staging.yaml")
    assert f'version: "{tag}"   # STAGING_IMAGE_TAG\n' in show(remote, "services/backend/config/staging.yaml")
    assert show(remote, "services/frontend/config/production.yaml") == (
        SEED / "services/frontend/config/production.yaml").read_text()
    assert "version: 0.9.0 # STAGING_IMAGE_TAG" in show(remote, "services/docs/config/staging.yaml")
    changed = git(remote, "diff", "--name-only", "main~1", "main").split()
    assert sorted(changed) == sorted(c.file for c in result.changes)
    mode = git(remote, "ls-tree", "main", "services/backend/config/staging.yaml").split()[0]
    assert mode == "100755"


def test_an_explicit_files_glob_replaces_the_default(remote: Path, tmp_path: Path) -> None:
    env = environment(remote, files=["services/frontend/config/staging.yaml"])
    result = bump(env, [ImageUpdate(f"{REGISTRY}/backend", "1.2.0")], ["evt-1"], tmp_path / "state")
    assert result.commit is None
    assert any("ambiguous" in s and "services/backend/config/staging.yaml" in s for s in result.skipped)


def test_the_bump_leaves_no_working_tree_behind(remote: Path, tmp_path: Path) -> None:
    result = bump(environment(remote), [ImageUpdate(f"{REGISTRY}/frontend", "1.2.0")], ["e"], tmp_path / "s")
    assert result.commit
    clones = list((tmp_path / "s" / "manifests").iterdir())
    assert [sorted(p.name for p in clone.iterdir()) for clone in clones] == [[".git"]]
