"""bump() against real local git: a bare remote in tmp_path, one working clone per caller."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from handlers import bump as bump_module
from handlers.bump import BumpResult, backoff, bump, commit_message, push_target
from handlers.errors import PermanentError, TransientError
from handlers.gitops import ManifestsRepo, PushRejected, parse_author
from handlers.manifests import Change, ImageUpdate
from handlers.settings import EnvImageConfig, EnvironmentConfig, GitLocation, PolicyConfig, RenderConfig

N = 10
IMAGES = [f"registry.local/shop/img{i}" for i in range(N)]
STAGING = "images:\n" + "".join(f"  img{i}:\n    version: 1.0.0 # STAGING_IMAGE_TAG\n" for i in range(N))
POLICY = PolicyConfig(semver=">=1.0.0", prereleases=True)


def git(cwd: Path, *args: str) -> str:
    ident = ["-c", "user.name=Seed", "-c", "user.email=seed@example.test", "-c", "commit.gpgsign=false"]
    return subprocess.run(["git", *ident, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    bare, seed = tmp_path / "remote.git", tmp_path / "seed"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    seed.mkdir()
    git(seed, "init", "-q", "-b", "main")
    (seed / "config").mkdir()
    (seed / "config" / "staging.yaml").write_text(STAGING)
    git(seed, "add", "config")
    git(seed, "commit", "-q", "-m", "seed")
    git(seed, "push", "-q", str(bare), "main")
    return bare


def environment(remote: Path, **kw: object) -> EnvironmentConfig:
    images = [EnvImageConfig(image=i, policy=POLICY) for i in IMAGES]
    return EnvironmentConfig(name="staging", git=GitLocation(url=str(remote)), markers=["STAGING_IMAGE_TAG"],
                             images=images, commit_author="Ship Bot <bot@example.test>", **kw)


def log(remote: Path, fmt: str, ref: str = "main") -> list[str]:
    return git(remote, "log", f"--format={fmt}", ref).splitlines()


def staging(remote: Path, ref: str = "main") -> str:
    return git(remote, "show", f"{ref}:config/staging.yaml")


def up(i: int, tag: str = "1.1.0") -> list[ImageUpdate]:
    return [ImageUpdate(IMAGES[i], tag, "sha256:" + f"{i}" * 64)]


def test_bump_commits_and_pushes_the_edit(remote: Path, tmp_path: Path) -> None:
    result = bump(environment(remote), up(3), ["evt-1"], tmp_path / "state")
    assert result.commit == log(remote, "%H")[0]
    assert "  img3:\n    version: 1.1.0 # STAGING_IMAGE_TAG\n" in staging(remote)
    assert [(c.file, c.old, c.new) for c in result.changes] == [("config/staging.yaml", "1.0.0", "1.1.0")]


def test_commit_carries_subject_author_and_trailers(remote: Path, tmp_path: Path) -> None:
    bump(environment(remote), up(3), ["evt-1", "evt-2"], tmp_path / "state")
    assert log(remote, "%s|%an <%ae>")[0] == "chore(staging): bump shop/img3 to 1.1.0|Ship Bot <bot@example.test>"
    trailers = git(remote, "log", "-1", "--format=%(trailers:only,unfold)").split("\n")
    assert trailers[:4] == ["Shipline-Event: evt-1", "Shipline-Event: evt-2",
                            "Shipline-Environment: staging", "Shipline-Bot: true"]


def test_same_event_twice_yields_one_commit(remote: Path, tmp_path: Path) -> None:
    first = bump(environment(remote), up(3), ["evt-1"], tmp_path / "a")
    second = bump(environment(remote), up(3, "1.2.0"), ["evt-1"], tmp_path / "b")
    third = bump(environment(remote), up(3), ["evt-1"], tmp_path / "a")
    assert first.commit and second.commit is None and third.commit is None
    assert "already applied" in second.skipped[0]
    assert len(log(remote, "%H")) == 2


def test_nothing_to_change_is_success_without_commit(remote: Path, tmp_path: Path) -> None:
    result = bump(environment(remote), up(3, "1.0.0"), ["evt-1"], tmp_path / "state")
    assert result == BumpResult(None, (), (), "main", 1)
    assert len(log(remote, "%H")) == 1


def test_several_tags_of_one_image_in_one_commit_take_the_policys_choice(remote: Path, tmp_path: Path) -> None:
    """Three tags of img3 waiting for the same commit (a backlog drained at once) and one of img4:
    one commit, img3 at the highest tag its semver policy allows, the others reported superseded."""
    updates = [*up(3, "1.2.0"), *up(3, "1.10.0"), *up(4, "1.3.0"), *up(3, "1.9.0")]

    result = bump(environment(remote), updates, ["evt-1", "evt-2", "evt-3", "evt-4"], tmp_path / "state")

    assert result.commit == log(remote, "%H")[0] and len(log(remote, "%H")) == 2
    assert "  img3:\n    version: 1.10.0 # STAGING_IMAGE_TAG\n" in staging(remote)
    assert "  img4:\n    version: 1.3.0 # STAGING_IMAGE_TAG\n" in staging(remote)
    assert sorted(result.skipped) == [f"{IMAGES[3]}: 1.2.0 superseded by 1.10.0 in the same commit",
                                      f"{IMAGES[3]}: 1.9.0 superseded by 1.10.0 in the same commit"]


def test_downgrade_is_refused_and_reported(remote: Path, tmp_path: Path) -> None:
    bump(environment(remote), up(3, "1.5.0"), ["evt-1"], tmp_path / "state")
    result = bump(environment(remote), up(3, "1.2.0"), ["evt-2"], tmp_path / "state")
    assert result.commit is None and "downgrade from 1.5.0" in result.skipped[0]


def test_pinned_image_is_held(remote: Path, tmp_path: Path) -> None:
    env = environment(remote).model_copy(update={"images": [EnvImageConfig(image=IMAGES[3],
                                                                           policy=PolicyConfig(pin="1.0.0"))]})
    result = bump(env, up(3, "1.1.0"), ["evt-1"], tmp_path / "state")
    assert result.commit is None and "pinned to 1.0.0" in result.skipped[0]


def test_unconfigured_image_is_skipped(remote: Path, tmp_path: Path) -> None:
    result = bump(environment(remote), [ImageUpdate("registry.local/shop/unknown", "1.1.0")], ["e"], tmp_path / "s")
    assert result.commit is None and "not configured" in result.skipped[0]


def test_push_branch_goes_to_a_review_branch(remote: Path, tmp_path: Path) -> None:
    env = environment(remote, push_branch="shipline/{env}/{image}-{tag}")
    result = bump(env, up(3), ["evt-1"], tmp_path / "state")
    assert result.branch == "shipline/staging/img3-1.1.0"
    assert "version: 1.1.0" in staging(remote, result.branch)
    assert len(log(remote, "%H")) == 1
    assert bump(env, up(3), ["evt-1"], tmp_path / "other").commit is None


def test_push_branch_unknown_placeholder_is_permanent(remote: Path) -> None:
    with pytest.raises(PermanentError, match="placeholder"):
        push_target(environment(remote, push_branch="x/{nope}"), up(1))


def test_rejected_push_reapplies_on_the_new_head(remote: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    original_push = ManifestsRepo.push
    raced: list[bool] = []

    def racing_push(self: ManifestsRepo, branch: str) -> None:
        if not raced:
            raced.append(True)
            monkeypatch.setattr(ManifestsRepo, "push", original_push)
            bump(environment(remote), up(7), ["evt-other"], tmp_path / "rival")
            monkeypatch.setattr(ManifestsRepo, "push", racing_push)
        original_push(self, branch)

    monkeypatch.setattr(ManifestsRepo, "push", racing_push)
    result = bump(environment(remote), up(3), ["evt-1"], tmp_path / "state", sleep=lambda _: None)
    assert result.attempts == 2 and result.commit == log(remote, "%H")[0]
    text = staging(remote)
    assert "  img3:\n    version: 1.1.0" in text and "  img7:\n    version: 1.1.0" in text


def test_exhausted_retries_raise_transient(remote: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def rejected(self: ManifestsRepo, branch: str) -> None:
        raise PushRejected("remote moved")

    monkeypatch.setattr(ManifestsRepo, "push", rejected)
    delays: list[float] = []
    with pytest.raises(TransientError, match="rejected 3 times"):
        bump(environment(remote), up(3), ["evt-1"], tmp_path / "state", attempts=3, sleep=delays.append)
    assert len(delays) == 2 and len(log(remote, "%H")) == 1


def test_ten_concurrent_bumps_all_land_once(remote: Path, tmp_path: Path) -> None:
    env = environment(remote)
    # In service the caller's lock prevents most races; 10 writers racing on purpose needed up
    # to 6 attempts locally, so the default of 8 is raised here for a loaded CI machine.

    def one(i: int) -> BumpResult:
        return bump(env, up(i), [f"evt-{i}"], tmp_path / f"state{i}", attempts=16)

    with ThreadPoolExecutor(max_workers=N) as pool:
        results = list(pool.map(one, range(N)))
    assert all(r.commit for r in results)
    assert len(log(remote, "%H")) == N + 1
    events = [line for line in log(remote, "%(trailers:key=Shipline-Event,valueonly)") if line]
    assert sorted(events) == sorted(f"evt-{i}" for i in range(N))
    assert staging(remote) == STAGING.replace("1.0.0", "1.1.0")


def test_cached_clone_is_reused(remote: Path, tmp_path: Path) -> None:
    bump(environment(remote), up(1), ["evt-1"], tmp_path / "state")
    clone = bump_module.workdir(environment(remote), tmp_path / "state")
    marker = clone / ".git" / "shipline-test-marker"
    marker.write_text("kept")
    bump(environment(remote), up(2), ["evt-2"], tmp_path / "state")
    assert marker.exists() and "  img2:\n    version: 1.1.0" in staging(remote)


def test_bad_event_id_is_refused(remote: Path, tmp_path: Path) -> None:
    with pytest.raises(PermanentError):
        bump(environment(remote), up(1), ["evt 1\nShipline-Event: forged"], tmp_path / "state")


def test_commit_message_lists_each_change() -> None:
    env = EnvironmentConfig(name="prod", git=GitLocation(url="x"))
    change = Change("config/prod.yaml", 8, "1.0.0", "1.1.0", IMAGES[0], "PROD")
    message = commit_message(env, [change], up(0), ["e1"])
    assert message.splitlines()[:3] == [
        "chore(prod): bump shop/img0 to 1.1.0", "",
        f"- config/prod.yaml:8: 1.0.0 → 1.1.0 ({IMAGES[0]}@sha256:{'0' * 64})"]
    assert message.endswith("Shipline-Event: e1\nShipline-Environment: prod\nShipline-Bot: true\n")


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    assert 0.1 <= backoff(1) <= 0.2
    assert 0.4 <= backoff(3) <= 0.8
    assert backoff(30) <= bump_module.MAX_DELAY


def test_author_must_be_name_and_email() -> None:
    assert parse_author("Ship <s@x.test>").email == "s@x.test"
    with pytest.raises(PermanentError):
        parse_author("no email")


def test_one_event_bumps_each_environment_of_a_shared_branch(remote: Path, tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    (seed / "config" / "production.yaml").write_text(STAGING.replace("STAGING", "PRODUCTION"))
    git(seed, "add", "config")
    git(seed, "commit", "-q", "-m", "production vars")
    git(seed, "push", "-q", str(remote), "main")
    production = environment(remote).model_copy(update={"name": "production", "markers": ["PRODUCTION_IMAGE_TAG"]})
    first = bump(environment(remote), up(3), ["evt-1"], tmp_path / "state")
    second = bump(production, up(3), ["evt-1"], tmp_path / "state")
    again = bump(production, up(3), ["evt-1"], tmp_path / "state")
    assert first.commit and second.commit and again.commit is None
    assert "version: 1.1.0 # PRODUCTION_IMAGE_TAG" in git(remote, "show", "main:config/production.yaml")


def test_bump_edits_the_vars_files_but_nothing_outside_its_path(remote: Path, tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    (seed / "templates").mkdir()
    (seed / "templates" / "app.yaml").write_text("kind: ConfigMap\n")
    (seed / "other").mkdir()
    (seed / "other" / "copy.yaml").write_text(STAGING)
    git(seed, "add", ".")
    git(seed, "commit", "-q", "-m", "layout")
    git(seed, "push", "-q", str(remote), "main")
    env = environment(remote).model_copy(update={
        "git": GitLocation(url=str(remote), path="templates"),
        "render": RenderConfig(mode="jinja2", vars=["config/staging.yaml"])})
    result = bump(env, up(3), ["evt-9"], tmp_path / "state")
    assert [c.file for c in result.changes] == ["config/staging.yaml"]
    assert git(remote, "show", "main:other/copy.yaml") == STAGING
