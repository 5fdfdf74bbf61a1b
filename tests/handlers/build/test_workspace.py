"""Each image's kept context checkout: moved by what changed, never shared, wiped when half done,
the commit's bytes; and ``build_push`` building from it (or from a fresh export when it cannot)."""

from __future__ import annotations

from pathlib import Path

from handlers.build.workspace import checkout_dir, kept_context
from tests.handlers.build.conftest import AppRepo, git, mirror


def files(tree: Path) -> dict[str, bytes]:
    return {str(p.relative_to(tree)): p.read_bytes() for p in sorted(tree.rglob("*")) if p.is_file()}


def test_a_kept_checkout_rewrites_only_what_changed_and_drops_what_went(app: AppRepo, tmp_path: Path) -> None:
    m, where = mirror(app), tmp_path / "kept"
    seed = app.pushed["refs/heads/main"]
    with kept_context(m, seed, "frontend", where) as tree:
        assert tree is not None and sorted(files(tree)) == ["Dockerfile", "index.html"]
        before = (tree / "Dockerfile").stat()
    added = app.commit({"frontend/index.html": "<h1>v2</h1>\n", "frontend/sub/new.txt": "new\n",
                        "backend/app.sh": "#!/bin/sh\necho other\n"})
    git(app.work, "rm", "-q", "frontend/sub/new.txt")
    git(app.work, "commit", "-qm", "gone again")
    removed = app.push("main").after
    m.fetch()
    with kept_context(m, added, "frontend", where) as tree:
        assert tree is not None
        assert files(tree) == {"Dockerfile": (app.work / "frontend/Dockerfile").read_bytes(),
                               "index.html": b"<h1>v2</h1>\n", "sub/new.txt": b"new\n"}
        after = (tree / "Dockerfile").stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), "unchanged: not rewritten"
    with kept_context(m, removed, "frontend", where) as tree:
        assert tree is not None and sorted(files(tree)) == ["Dockerfile", "index.html"]
        assert not (tree / "sub").exists()


def test_a_checkout_one_build_holds_is_not_given_to_another(app: AppRepo, tmp_path: Path) -> None:
    m, seed = mirror(app), app.pushed["refs/heads/main"]
    with kept_context(m, seed, "frontend", tmp_path / "kept") as held, \
            kept_context(m, seed, "frontend", tmp_path / "kept") as other:
        assert held is not None and other is None
    with kept_context(m, seed, "frontend", tmp_path / "kept") as again:
        assert again == held


def test_a_checkout_an_update_left_half_done_is_checked_out_whole(app: AppRepo, tmp_path: Path) -> None:
    m, seed, where = mirror(app), app.pushed["refs/heads/main"], tmp_path / "kept"
    with kept_context(m, seed, ".", where) as tree:
        assert tree is not None
    (where / "complete").unlink()  # as a worker killed mid-update leaves it
    (tree / "frontend" / "stray.txt").write_text("not in any commit\n")
    (tree / "backend" / "app.sh").write_text("tampered\n")
    with kept_context(m, seed, ".", where) as tree:
        assert tree is not None and not (tree / "frontend" / "stray.txt").exists()
        assert (tree / "backend" / "app.sh").read_text() == "#!/bin/sh\necho ok\n"


def test_export_and_kept_checkout_are_the_commits_bytes_whatever_the_attributes(app: AppRepo,
                                                                              tmp_path: Path) -> None:
    m = mirror(app)
    (m.path / "info" / "attributes").write_text("* -export-subst -export-ignore\n")  # a mirror cloned before
    app.commit({".gitattributes": "* text eol=crlf ident\n", "frontend/lf.txt": "a\nb $Id$\n"})
    sha = app.push("main").after
    m = mirror(app)  # reopened: its attributes are brought up to date
    exported = m.export(sha, tmp_path / "out", ["frontend"])
    assert (exported / "frontend" / "lf.txt").read_bytes() == b"a\nb $Id$\n"
    with kept_context(m, sha, "frontend", tmp_path / "kept") as tree:
        assert tree is not None and (tree / "lf.txt").read_bytes() == b"a\nb $Id$\n"


def test_consecutive_builds_see_each_commits_context_exactly(app: AppRepo) -> None:
    check = "RUN test \"$(cat /site/index.html)\" = {want} && test {gone} -e /site/extra.txt"
    app.commit({"frontend/Dockerfile": f"FROM {app.stack.base_image}\nCOPY . /site/\n"
                + check.format(want="v2", gone="") + "\n",
                "frontend/index.html": "v2\n", "frontend/extra.txt": f"{app.uid}\n"})
    first = app.build(app.push("main"))
    assert [i.status for i in first.images] == ["built"], first.images[0].log_tail
    git(app.work, "rm", "-q", "frontend/extra.txt")
    app.commit({"frontend/Dockerfile": f"FROM {app.stack.base_image}\nCOPY . /site/\n"
                + check.format(want="v3", gone="!") + "\n", "frontend/index.html": "v3\n"})
    second = app.build(app.push("main"))
    assert [i.status for i in second.images] == ["built"], second.images[0].log_tail
    kept = checkout_dir(app.stack.state_dir, f"app-{app.uid}", app.image("frontend")) / "tree"
    assert (kept / "index.html").read_text() == "v3\n" and not (kept / "extra.txt").exists()


def test_a_held_checkout_or_a_dockerfile_outside_the_context_builds_from_a_fresh_export(app: AppRepo) -> None:
    app.commit({"docker/frontend.Dockerfile": f"FROM {app.stack.base_image}\nCOPY index.html /i.html\n"
                                              f"RUN echo {app.uid} > /outside.txt\n",
                "frontend/index.html": "<h1>outside</h1>\n"})
    event = app.push("main")
    outside = app.config([{"name": app.image("frontend"), "context": "frontend",
                           "dockerfile": "docker/frontend.Dockerfile", "tags": ["{short_sha}"]}])
    assert [i.status for i in app.build(event, outside).images] == ["built"]
    kept = checkout_dir(app.stack.state_dir, f"app-{app.uid}", app.image("frontend"))
    assert not (kept / "tree").exists(), "a Dockerfile outside the context is exported with it"
    m = mirror(app)
    with kept_context(m, event.after, "frontend", kept) as held:
        assert held is not None
        report = app.build(event)
    assert [(i.name, i.status) for i in report.images] == [(app.image("frontend"), "built")]


def test_nothing_is_written_through_a_symbolic_link_the_previous_commit_left(app: AppRepo, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    m, where = mirror(app), tmp_path / "kept"
    (app.work / "frontend" / "out").symlink_to(outside)
    linked = app.commit({})
    (app.work / "frontend" / "out").unlink()
    replaced = app.commit({"frontend/out/evil.txt": "written where?\n"})
    app.push("main")
    m.fetch()
    with kept_context(m, linked, "frontend", where) as tree:
        assert tree is not None and (tree / "out").is_symlink()
    with kept_context(m, replaced, "frontend", where) as tree:
        assert tree is not None and (tree / "out" / "evil.txt").read_text() == "written where?\n"
    assert not (tree / "out").is_symlink() and list(outside.iterdir()) == []


def test_a_checkout_with_a_damaged_index_is_checked_out_again_from_nothing(app: AppRepo, tmp_path: Path) -> None:
    m, seed, where = mirror(app), app.pushed["refs/heads/main"], tmp_path / "kept"
    with kept_context(m, seed, "frontend", where) as tree:
        assert tree is not None
    (where / "index").write_bytes(b"DIRC not an index")
    with kept_context(m, seed, "frontend", where) as tree:
        assert tree is not None and sorted(files(tree)) == ["Dockerfile", "index.html"]
