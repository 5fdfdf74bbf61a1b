"""A ``bud`` started before the fetch (``handlers.build.prestart``), on the real stack: it builds what
the commit holds, and every guess the commit proves wrong leaves no process, FIFO or log behind."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from pathlib import Path

import pytest

import handlers.build.run as run_module
from handlers.build.errors import GitUnavailable
from handlers.build.filelock import flocked
from handlers.build.prestart import PrestartedBud
from handlers.build.process import LoggedProcess
from handlers.build.workspace import checkout_dir
from handlers.events import GitPushed
from handlers.settings import BuildSettings
from tests.handlers.build.conftest import AppRepo, dockerfile

BUD = "bud --isolation chroot"


def named(event: GitPushed, *paths: str) -> GitPushed:
    """``event`` as a forge sends it, naming the paths its commits changed."""
    return dataclasses.replace(event, changed_paths=paths)


def warmed(app: AppRepo) -> None:
    """The frontend built once, so its kept checkout exists (a prestart needs it)."""
    app.commit({"frontend/index.html": "<h1>warm</h1>\n"})
    app.build(app.push("main"))


def frontend_change_after_a_warm_build(app: AppRepo, html: str) -> GitPushed:
    """The pushed event of a change to the (already built) frontend's page, naming that file."""
    warmed(app)
    app.commit({"frontend/index.html": html})
    return named(app.push("main"), "frontend/index.html")


def assert_left_nothing(app: AppRepo) -> None:
    for bud in app.builder.prestarted:
        assert bud.closed and bud.process.proc.poll() is not None, "a prestarted bud still runs"
        assert not bud.fifo.parent.exists(), "its FIFO was left behind"
    assert not list((app.stack.state_dir / "buildah").glob("dockerfile-*/*"))


@pytest.mark.parametrize("at_push", [True, False], ids=["labels set by the push", "labels as a build step"])
def test_a_push_naming_an_image_builds_it_in_a_bud_started_before_the_fetch(
        app: AppRepo, monkeypatch: pytest.MonkeyPatch, at_push: bool) -> None:
    if not at_push:
        app.keys_as_build_step()
    warmed(app)
    order: list[str] = []
    opened = run_module.Mirror.open

    def fetching(*args: object, **kwargs: object) -> object:
        order.append("fetch" if app.builder.prestarted else "fetch before any bud")
        return opened(*args, **kwargs)

    monkeypatch.setattr(run_module.Mirror, "open", fetching)
    app.commit({"frontend/index.html": "<h1>early</h1>\n",  # the Dockerfile too: it is read after the fetch
                "frontend/Dockerfile": dockerfile(app.stack, f"echo {app.uid} > /prestarted.txt")})
    event = named(app.push("main"), "frontend/index.html", "frontend/Dockerfile")
    built = app.build(event).images[0]
    assert (built.name, built.status) == (app.image("frontend"), "built")
    assert order == ["fetch"] and len(app.builder.prestarted) == 1
    log = Path(built.log).read_text()
    assert log.count(BUD) == 1, "the prestarted bud built it, nothing else"
    assert f"echo {app.uid} > /prestarted.txt" in log, "the commit's Dockerfile, given after the fetch"
    assert log.count("LABEL ") == (0 if at_push else 1)
    labels = app.config_blob("frontend", app.manifest("frontend", "main").json())["config"]["Labels"]
    assert labels["org.opencontainers.image.revision"] == event.after
    assert app.manifest("frontend", event.after[:7]).headers["Docker-Content-Digest"] == built.digest
    assert_left_nothing(app)


def test_ignore_files_the_push_adds_apply_to_the_prestarted_bud(app: AppRepo) -> None:
    """buildah reads the ignore files only once it has its Dockerfile, after the checkout moved."""
    copying = f"FROM {app.stack.base_image}\nCOPY . /app\nRUN ls /app && echo {app.uid}\n"
    app.commit({"frontend/Dockerfile": copying})
    app.build(app.push("main"))
    app.commit({"frontend/secret.txt": "not for the image\n", "frontend/.dockerignore": "secret.txt\n"})
    event = named(app.push("main"), "frontend/secret.txt", "frontend/.dockerignore")
    built = app.build(event).images[0]
    assert built.status == "built" and len(app.builder.prestarted) == 1
    log = Path(built.log).read_text()
    assert log.count(BUD) == 1 and "index.html" in log
    assert "secret.txt" not in log.split("STEP 2/")[1], "the ignore file the push added was not applied"


def test_a_push_whose_tree_was_built_before_is_retagged_and_its_prestarted_bud_leaves_no_log(app: AppRepo) -> None:
    warmed(app)
    app.commit({"frontend/index.html": "<h1>other</h1>\n"})
    app.build(named(app.push("main"), "frontend/index.html"))
    app.commit({"frontend/index.html": "<h1>warm</h1>\n"})  # back to the warmed tree: its content key is known
    event = named(app.push("main"), "frontend/index.html")
    logs = app.stack.state_dir / "build-logs" / app.config().name
    before = set(logs.iterdir())
    retagged = app.build(event).images[0]
    assert retagged.status == "retagged" and retagged.log is None
    assert len(app.builder.prestarted) == 2
    assert set(logs.iterdir()) == before, "the unused bud's log was removed"
    assert_left_nothing(app)


def test_a_push_that_changed_no_image_after_all_stops_its_prestarted_bud(app: AppRepo) -> None:
    warmed(app)
    app.commit({"docs/README.md": "# the sender named frontend, the commit did not change it\n"})
    report = app.build(named(app.push("main"), "frontend/index.html"))
    assert report.images == () and report.nothing_to_build_reason
    assert len(app.builder.prestarted) == 1
    assert_left_nothing(app)


def test_a_checkout_another_build_holds_means_a_fresh_bud_and_says_why(app: AppRepo) -> None:
    event = frontend_change_after_a_warm_build(app, "<h1>held</h1>\n")
    where = checkout_dir(app.stack.state_dir, app.config().name, app.image("frontend"))
    with flocked(where / "lock"):  # the build exports a fresh copy instead: not the context guessed
        built = app.build(event).images[0]
    assert built.status == "built" and len(app.builder.prestarted) == 1
    log = Path(built.log).read_text()
    assert "# started before the commit was known, not used: the commit's build differs" in log
    assert log.count(BUD) == 2
    labels = app.config_blob("frontend", app.manifest("frontend", "main").json())["config"]["Labels"]
    assert labels["org.opencontainers.image.revision"] == event.after
    assert_left_nothing(app)


def test_a_failed_fetch_stops_the_prestarted_bud(app: AppRepo) -> None:
    event = frontend_change_after_a_warm_build(app, "<h1>unreachable</h1>\n")
    gone = app.config().model_copy(update={"url": app.url.replace(app.uid, "missing" + app.uid)})
    with pytest.raises(GitUnavailable):
        app.build(event, gone)
    assert len(app.builder.prestarted) == 1
    assert_left_nothing(app)


def test_a_superseded_push_stops_the_prestarted_bud_and_builds_nothing(app: AppRepo) -> None:
    event = frontend_change_after_a_warm_build(app, "<h1>superseded</h1>\n")
    report = app.build(event, should_continue=lambda: False)
    assert [i.status for i in report.images] == ["superseded"]
    assert len(app.builder.prestarted) == 1 and app.manifest("frontend", event.after[:7]).status_code == 404
    assert_left_nothing(app)


def test_annotations_set_by_the_push_are_prestarted_too(app: AppRepo) -> None:
    event = frontend_change_after_a_warm_build(app, "<h1>annotated early</h1>\n")
    built = app.build(event, settings=BuildSettings(parallelism=2, oci_metadata="annotations")).images[0]
    assert built.status == "built" and len(app.builder.prestarted) == 1
    assert Path(built.log).read_text().count(BUD) == 1
    manifest = app.manifest("frontend", "main").json()
    assert manifest["annotations"]["org.opencontainers.image.revision"] == event.after
    assert_left_nothing(app)


@pytest.mark.parametrize("settings", [BuildSettings(parallelism=2, prestart=False),
                                      BuildSettings(parallelism=2, oci_metadata="annotations")],
                         ids=["turned off", "annotations set by the build"])
def test_no_prestart_when_turned_off_or_with_annotations_set_by_the_build(
        app: AppRepo, settings: BuildSettings) -> None:
    if settings.prestart:
        app.keys_as_build_step()
    event = frontend_change_after_a_warm_build(app, f"<h1>{settings.prestart} {settings.oci_metadata}</h1>\n")
    built = app.build(event, settings=settings).images[0]
    assert built.status == "built" and app.builder.prestarted == []


def started(tmp_path: Path, script: str) -> PrestartedBud:
    """A stand-in ``bud``: ``sh -c script`` with ``$0`` the FIFO, as ``BuildahBuilder.prestart`` starts one."""
    fifo = tmp_path / "private" / "Dockerfile"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    process = LoggedProcess(["sh", "-c", script, str(fifo)], log=tmp_path / "build.log")
    closers = contextlib.ExitStack()
    closers.enter_context(process)
    return PrestartedBud(spec=None, fifo=fifo, process=process, _closers=closers)  # type: ignore[arg-type]


def test_feed_writes_the_dockerfile_to_a_reader_that_is_still_starting(tmp_path: Path) -> None:
    bud = started(tmp_path, 'sleep 0.2; cat "$0" > "$0.read"; test -f "$(dirname "$0")/Dockerfile.dockerignore"')
    ignore = tmp_path / "Dockerfile.dockerignore"
    ignore.write_text("secret\n")
    bud.feed("FROM scratch\n" * 10_000, [ignore], 10)  # more than a pipe holds
    assert bud.process.wait(10, lambda: True) == 0
    assert bud.fifo.with_name("Dockerfile.read").read_text() == "FROM scratch\n" * 10_000
    bud.close()
    assert "# exit 0" in (tmp_path / "build.log").read_text()


def test_feed_returns_at_once_when_the_bud_ended_before_reading(tmp_path: Path) -> None:
    bud = started(tmp_path, "echo cannot start; exit 125")
    began = time.monotonic()
    bud.feed("FROM scratch\n", [], 30)
    assert time.monotonic() - began < 5, "feed waited for a reader that had died"
    assert bud.process.wait(10, lambda: True) == 125
    bud.close()
    assert "cannot start" in (tmp_path / "build.log").read_text()


def test_an_unused_bud_is_stopped_and_its_log_removed(tmp_path: Path) -> None:
    bud = started(tmp_path, 'cat "$0"')
    bud.close()
    assert bud.process.proc.poll() is not None and not (tmp_path / "build.log").exists()
    bud.close()  # twice is fine
