"""The cached mirror, ``{describe}`` and the content key, on the real HTTP git server."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from handlers.build.cache import context_key, context_keys
from handlers.build.changes import changed_images
from handlers.build.errors import CommitNotFound, GitUnavailable
from handlers.build.mirror import Mirror, Want, _locked, maintain_all
from handlers.build.run import commit_facts
from handlers.build.tags import describe
from handlers.errors import PermanentError, UnsafeInput
from handlers.settings import ImageBuildConfig
from tests.handlers.build.conftest import AppRepo, git, mirror


def test_the_mirror_is_cloned_once_then_fetched(app: AppRepo) -> None:
    first = mirror(app)
    objects = first.path / "objects"
    marker = os.stat(objects).st_ino
    sha = app.commit({"frontend/x": "1"})
    assert not first.has_commit(sha)
    app.push("main")
    first.ensure_commit(sha)
    assert first.has_commit(sha)
    assert os.stat(mirror(app).path / "objects").st_ino == marker


def test_a_commit_missing_after_fetch_is_not_found(app: AppRepo) -> None:
    with pytest.raises(CommitNotFound):
        mirror(app).ensure_commit("1" * 40)


def test_a_build_without_describe_fetches_only_the_pushed_commit_into_its_ref(app: AppRepo) -> None:
    m = mirror(app)
    sha = app.commit({"frontend/x": "1"})
    app.push_tag("9.9.9")
    pushed = app.push("main")
    targeted = mirror(app, Want(pushed.after, pushed.ref))
    assert targeted.has_commit(sha) and targeted.run("rev-parse", "refs/heads/main") == sha
    assert targeted.try_run("rev-parse", "--verify", "refs/tags/9.9.9") is None, "only the pushed ref moved"
    assert mirror(app).run("rev-parse", "refs/tags/9.9.9^{commit}") == sha, "a full fetch takes every ref"
    assert m.path == targeted.path


def test_a_commit_already_in_the_mirror_needs_no_fetch(app: AppRepo) -> None:
    seed = app.pushed["refs/heads/main"]
    mirror(app)
    gone = "http://127.0.0.1:1/gone.git"  # nothing listens: any fetch fails
    with pytest.raises(GitUnavailable):
        Mirror.open(state_dir=app.stack.state_dir, name=f"app-{app.uid}", url=gone)
    present = Mirror.open(state_dir=app.stack.state_dir, name=f"app-{app.uid}", url=gone,
                          want=Want(seed, "refs/heads/main"))
    assert present.ensure_commit(seed) == seed


def test_the_usual_push_asks_git_nothing_before_its_targeted_fetch(app: AppRepo,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    mirror(app)
    app.commit({"frontend/x": "3"})
    pushed = app.push("main")

    def asked(self: Mirror, sha: str) -> bool:
        raise AssertionError("a new commit needs no has_commit before the fetch")

    monkeypatch.setattr(Mirror, "has_commit", asked)
    m = mirror(app, Want(pushed.after, pushed.ref))
    assert m.run("rev-parse", "refs/heads/main") == pushed.after


def test_commit_facts_peel_an_annotated_tag_and_fetch_a_missing_commit_once(app: AppRepo) -> None:
    m = mirror(app)
    commit = app.commit({"frontend/x": "4"})
    tag = app.push_tag("7.7.7", annotated=True)
    assert tag.after != commit, "the event names the tag object"
    facts = commit_facts(m, tag.after)  # not in the mirror yet: one full fetch, then peeled
    assert facts.sha == commit and not facts.made_by_shipline
    assert facts.committed_at.timestamp() == int(git(app.work, "log", "-1", "--format=%ct", commit))
    with pytest.raises(CommitNotFound):
        commit_facts(m, "2" * 40)


def test_a_commit_the_targeted_fetch_cannot_get_falls_back_to_every_ref(app: AppRepo) -> None:
    mirror(app)
    tagged = app.commit({"frontend/x": "2"})
    app.push_tag("8.8.8")
    m = mirror(app, Want("1" * 40, "refs/heads/main"))
    assert m.run("rev-parse", "refs/tags/8.8.8^{commit}") == tagged
    with pytest.raises(CommitNotFound):
        m.ensure_commit("1" * 40)


def test_a_malformed_sha_is_refused_before_git_sees_it(app: AppRepo) -> None:
    with pytest.raises(UnsafeInput):
        mirror(app).ensure_commit("--upload-pack=evil")


def test_export_writes_the_exact_tree_with_modes_and_ignores_export_attributes(app: AppRepo, tmp_path: Path) -> None:
    (app.work / "backend").mkdir(exist_ok=True)
    app.commit({".gitattributes": "backend/app.sh export-ignore\nbackend/v.txt export-subst\n",
                "backend/v.txt": "$Format:%H$\n"})
    git(app.work, "update-index", "--chmod=+x", "backend/app.sh")
    git(app.work, "commit", "-qm", "exec")
    sha = app.push("main").after
    out = mirror(app).export(sha, tmp_path / "out", ["backend"])
    assert sorted(p.name for p in out.iterdir()) == ["backend"]
    assert (out / "backend" / "v.txt").read_text() == "$Format:%H$\n"
    assert os.access(out / "backend" / "app.sh", os.X_OK)


def test_describe_counts_first_parent_commits_since_the_release_tag(app: AppRepo) -> None:
    m = mirror(app)
    seed = app.pushed["refs/heads/main"]
    assert describe(m, seed) == f"0.0.0-1-g{seed[:7]}"
    app.push_tag("1.0.0")
    for n in range(3):
        app.commit({"frontend/x": str(n)})
    head = app.push("main").after
    m.fetch()
    assert describe(m, seed) == "1.0.0"
    assert describe(m, head) == f"1.0.0-3-g{head[:7]}"


def test_key_depends_on_the_context_tree_not_the_commit(app: AppRepo) -> None:
    m = mirror(app)
    frontend = ImageBuildConfig(name="reg.example/f", context="frontend")
    seed = app.pushed["refs/heads/main"]
    docs = app.commit({"docs/README.md": "other\n"})
    changed = app.commit({"frontend/index.html": "other\n"})
    app.push("main")
    m.fetch()
    key = context_key(m, seed, frontend, "frontend/Dockerfile")
    assert context_key(m, docs, frontend, "frontend/Dockerfile") == key
    assert context_key(m, changed, frontend, "frontend/Dockerfile") != key
    with_args = ImageBuildConfig(name="reg.example/f", context="frontend", build_args={"V": "1"})
    assert context_key(m, seed, with_args, "frontend/Dockerfile") != key
    with_target = ImageBuildConfig(name="reg.example/f", context="frontend", target="prod")
    assert context_key(m, seed, with_target, "frontend/Dockerfile") != key
    whole = ImageBuildConfig(name="reg.example/f", context=".")
    assert context_key(m, docs, whole, "frontend/Dockerfile") != context_key(m, seed, whole, "frontend/Dockerfile")


def test_a_key_for_a_missing_dockerfile_or_context_says_which(app: AppRepo) -> None:
    m = mirror(app)
    seed = app.pushed["refs/heads/main"]
    frontend = ImageBuildConfig(name="reg.example/f", context="frontend")
    with pytest.raises(PermanentError, match=f"no Dockerfile at frontend/Containerfile in {seed[:7]}"):
        context_key(m, seed, frontend, "frontend/Containerfile")
    gone = ImageBuildConfig(name="reg.example/f", context="web")
    with pytest.raises(PermanentError, match=f"no context directory web in {seed[:7]}"):
        context_key(m, seed, gone, "frontend/Dockerfile")


def test_keys_read_together_are_the_keys_read_alone(app: AppRepo) -> None:
    m = mirror(app)
    seed = app.pushed["refs/heads/main"]
    images = [(ImageBuildConfig(name="reg.example/f", context="frontend"), "frontend/Dockerfile"),
              (ImageBuildConfig(name="reg.example/w", context=".", build_args={"V": "1"}), "frontend/Dockerfile"),
              (ImageBuildConfig(name="reg.example/t", context="frontend", target="prod"), "frontend/Dockerfile")]
    together = context_keys(m, seed, images)
    assert together == {image.name: context_key(m, seed, image, dockerfile) for image, dockerfile in images}
    assert len(set(together.values())) == 3


def test_keys_read_together_are_none_when_one_cannot_be_read(app: AppRepo) -> None:
    """Each image's key is then read alone, so the one at fault fails with its own reason."""
    m = mirror(app)
    seed = app.pushed["refs/heads/main"]
    fine = (ImageBuildConfig(name="reg.example/f", context="frontend"), "frontend/Dockerfile")
    assert context_keys(m, seed, [fine, (ImageBuildConfig(name="reg.example/g", context="web"),
                                         "web/Dockerfile")]) == {}
    assert context_keys(m, seed, [fine, (ImageBuildConfig(name="reg.example/h", context="frontend"),
                                         "../Dockerfile")]) == {}
    assert context_keys(m, "0" * 40, [fine]) == {}
    assert context_keys(m, seed, []) == {}


def test_new_branch_force_push_and_tag_push_build_every_image(app: AppRepo) -> None:
    images = app.config().images
    m = mirror(app)
    assert changed_images(m, images, app.event("refs/heads/x", "0" * 40, app.pushed["refs/heads/main"])).reason \
        == "new branch x: every image builds"
    old = app.pushed["refs/heads/main"]
    git(app.work, "commit", "--amend", "-qm", "rewritten")
    forced = app.push("main", force=True)
    m.fetch()
    unflagged = app.event(forced.ref, old, forced.after)
    decision = changed_images(m, images, unflagged)
    assert len(decision.images) == 2 and decision.reason.startswith("force push")
    tag = app.event("refs/tags/1.0.0", "0" * 40, forced.after)
    assert len(changed_images(m, images, tag).images) == 2


def packs(m: Mirror) -> int:
    return len(list((m.path / "objects" / "pack").glob("*.pack")))


def test_a_targeted_fetch_leaves_maintenance_to_maintain_all(app: AppRepo) -> None:
    m = mirror(app)
    for key, value in (("fetch.unpackLimit", "1"), ("gc.autoPackLimit", "2"), ("gc.autoDetach", "false")):
        m.run("config", key, value)  # every fetch keeps its pack; git wants a repack past two
    for n in range(3):
        app.commit({"frontend/x": f"packed {n}"})
        pushed = app.push("main")
        mirror(app, Want(pushed.after, pushed.ref))
    assert packs(m) == 4, "the clone's pack and one per fetch: no fetch repacked"
    held = maintain_all(app.stack.state_dir)
    assert f"app-{app.uid}" in held.maintained and not held.failed
    assert packs(m) == 1
    assert m.run("rev-parse", "refs/heads/main") == pushed.after


def test_maintenance_skips_a_mirror_a_build_holds(app: AppRepo) -> None:
    m = mirror(app)
    with _locked(m.path):
        done = maintain_all(app.stack.state_dir)
    assert f"app-{app.uid}" in done.busy and f"app-{app.uid}" not in done.maintained


def asking(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The git commands the mirror runs from here on (``log``, ``diff``, ...)."""
    asked: list[str] = []
    for name in ("run", "try_run"):
        real = getattr(Mirror, name)

        def recording(self: Mirror, *args: str, _real: Callable[..., str | None] = real) -> str | None:
            asked.append(args[0])
            return _real(self, *args)

        monkeypatch.setattr(Mirror, name, recording)
    return asked


def test_a_one_commit_push_is_decided_from_the_commit_facts_alone(app: AppRepo,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    m = mirror(app)
    images = app.config().images
    app.commit({"backend/app.sh": "#!/bin/sh\necho two\n", "docs/new line.md": "x\n"})
    pushed = app.push("main")
    m.fetch()
    asked = asking(monkeypatch)
    facts = commit_facts(m, pushed.after)
    decision = changed_images(m, images, pushed, facts.parent_diff)
    assert asked == ["log"], "no merge-base, no diff"
    assert decision.images == (images[1].name,)
    assert decision.reason == "paths changed: backend/app.sh, docs/new line.md"


def test_a_push_of_several_commits_or_a_merge_diffs_the_whole_push(app: AppRepo,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    m = mirror(app)
    images = app.config().images
    before = app.pushed["refs/heads/main"]
    app.commit({"frontend/index.html": "<h1>two</h1>\n"})
    app.commit({"docs/README.md": "# two\n"})
    pushed = app.push("main")
    m.fetch()
    asked = asking(monkeypatch)
    facts = commit_facts(m, pushed.after)
    assert facts.parent_diff is not None and facts.parent_diff.paths == ("docs/README.md",)
    decision = changed_images(m, images, pushed, facts.parent_diff)
    assert asked == ["log", "merge-base", "diff"] and pushed.before == before
    assert decision.images == (images[0].name,), "the first commit of the push counts too"
    git(app.work, "checkout", "-qb", "side", before)
    app.commit({"backend/app.sh": "#!/bin/sh\necho side\n"})
    git(app.work, "checkout", "-q", "main")
    git(app.work, "merge", "-q", "--no-edit", "side")
    merged = app.push("main")
    m.fetch()
    facts = commit_facts(m, merged.after)
    assert facts.parent_diff is not None and facts.parent_diff.parent == pushed.after
    assert changed_images(m, images, merged, facts.parent_diff).images == (images[1].name,)


def test_a_mirror_follows_a_moved_url_and_a_fresh_clone_at_its_path(app: AppRepo) -> None:
    """The worker keeps each mirror's ``Repo`` and reads the config once per open: neither may
    keep a URL the config moved away from, nor a mirror that was removed and cloned again."""
    m = mirror(app)
    moved = app.url.replace("127.0.0.1", "localhost")
    sha = app.commit({"frontend/x": "moved"})
    pushed = app.push("main")
    reopened = Mirror.open(state_dir=app.stack.state_dir, name=f"app-{app.uid}", url=moved,
                           want=Want(pushed.after, pushed.ref))
    assert reopened.run("config", "remote.origin.url") == moved and reopened.origin_url() == moved
    assert reopened.run("rev-parse", "refs/heads/main") == sha
    shutil.rmtree(m.path)
    again = app.commit({"frontend/x": "after the clone was removed"})
    pushed = app.push("main")
    fresh = Mirror.open(state_dir=app.stack.state_dir, name=f"app-{app.uid}", url=app.url,
                        want=Want(pushed.after, pushed.ref))
    assert fresh.path == m.path and fresh.origin_url() == app.url
    assert fresh.run("rev-parse", "refs/heads/main") == again
    newer = app.commit({"frontend/x": "fetched into the fresh clone"})
    pushed = app.push("main")
    assert mirror(app, Want(pushed.after, pushed.ref)).run("rev-parse", "refs/heads/main") == newer
