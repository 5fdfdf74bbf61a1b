"""build_push against the real stack: buildah builds, the Distribution registry serves the result."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from handlers.settings import BuildSettings
from tests.handlers.build.conftest import AppRepo, dockerfile


def test_push_touching_one_service_builds_exactly_that_one(app: AppRepo) -> None:
    app.commit({"frontend/index.html": "<h1>shop v2</h1>\n"})
    event = app.push("main")
    report = app.build(event)
    assert [(i.name, i.status) for i in report.images] == [(app.image("frontend"), "built")]
    assert app.builder.calls == [app.image("frontend")]
    built = report.images[0]
    assert built.tags == (event.after[:7], "main")
    for tag in built.tags:
        answer = app.manifest("frontend", tag)
        assert answer.status_code == 200
        assert answer.headers["Docker-Content-Digest"] == built.digest
    labels = app.config_blob("frontend", app.manifest("frontend", "main").json())["config"]["Labels"]
    assert labels["org.opencontainers.image.revision"] == event.after
    assert labels["org.opencontainers.image.source"] == app.url
    assert labels["org.opencontainers.image.created"].endswith("Z")
    assert "io.buildah.version" in labels, "the image's own labels are kept beside the keys"
    assert "LABEL" not in Path(built.log).read_text(), "the push set the labels: no build step"
    assert app.manifest("backend", "main").status_code == 404


@pytest.mark.parametrize("metadata", ["labels", "annotations"])
def test_without_shipline_push_the_keys_are_set_by_the_build(app: AppRepo, metadata: str) -> None:
    app.keys_as_build_step()
    app.commit({"frontend/Dockerfile": dockerfile(app.stack, f"echo {app.uid} > /stepped.txt")})  # no cache hit
    event = app.push("main")
    built = app.build(event, settings=BuildSettings(parallelism=2, oci_metadata=metadata)).images[0]
    manifest = app.manifest("frontend", "main").json()
    keys = manifest["annotations"] if metadata == "annotations" else app.config_blob("frontend", manifest)["config"][
        "Labels"]
    assert keys["org.opencontainers.image.revision"] == event.after
    log = Path(built.log).read_text()
    assert "shipline-push" not in log and "buildah push" not in log and " push --tls-verify" in log
    assert log.count("LABEL ") == (1 if metadata == "labels" else 0)


def test_oci_keys_as_annotations_go_on_the_manifest_without_a_label_step(app: AppRepo) -> None:
    app.commit({"frontend/Dockerfile": dockerfile(app.stack, f"echo {app.uid} > /annotated.txt")})  # no cache hit
    event = app.push("main")
    report = app.build(event, settings=BuildSettings(parallelism=2, oci_metadata="annotations"))
    built = report.images[0]
    assert (built.name, built.status) == (app.image("frontend"), "built")
    manifest = app.manifest("frontend", "main").json()
    assert manifest["annotations"]["org.opencontainers.image.revision"] == event.after
    assert manifest["annotations"]["org.opencontainers.image.source"] == app.url
    labels = app.config_blob("frontend", manifest)["config"].get("Labels") or {}
    assert "org.opencontainers.image.revision" not in labels
    assert "LABEL" not in Path(built.log).read_text(), "annotations need no build step"


@pytest.mark.parametrize(("metadata", "at_push"), [("annotations", True), ("labels", True), ("annotations", False)],
                         ids=["annotations", "labels", "annotations by the build"])
def test_a_build_served_whole_from_the_cache_still_names_its_own_commit(
        app: AppRepo, metadata: str, at_push: bool) -> None:
    """The test Dockerfile copies nothing from the context, so a second commit's build is all
    cache hits: buildah would tag the first image, annotations and all, without a commit."""
    if not at_push:
        app.keys_as_build_step()
    settings = BuildSettings(parallelism=2, oci_metadata=metadata)
    app.commit({"frontend/index.html": "<h1>one</h1>\n"})
    first = app.build(app.push("main"), settings=settings).images[0]
    app.commit({"frontend/index.html": "<h1>two</h1>\n"})
    second = app.push("main")
    built = app.build(second, settings=settings).images[0]
    assert "Using cache" in Path(built.log).read_text()
    manifest = app.manifest("frontend", "main").json()
    keys = manifest["annotations"] if metadata == "annotations" else app.config_blob("frontend", manifest)["config"][
        "Labels"]
    assert keys["org.opencontainers.image.revision"] == second.after
    assert built.digest != first.digest
    assert app.manifest("frontend", second.after[:7]).headers["Docker-Content-Digest"] == built.digest


def test_docs_only_push_builds_nothing_and_says_why(app: AppRepo) -> None:
    app.commit({"docs/README.md": "# shop, documented\n"})
    report = app.build(app.push("main"))
    assert report.images == ()
    assert report.nothing_to_build_reason == "no image's paths changed: docs/README.md"
    assert app.builder.calls == []


def test_same_tree_on_another_branch_is_retagged_not_rebuilt(app: AppRepo) -> None:
    first = app.build(app.event("refs/heads/main", "0" * 40, app.pushed["refs/heads/main"]))
    assert {i.status for i in first.images} == {"built"}
    calls = len(app.builder.calls)
    app.commit({"docs/README.md": "# only docs differ\n"})
    report = app.build(app.push("feature"))
    assert [i.status for i in report.images] == ["retagged", "retagged"]
    assert len(app.builder.calls) == calls
    for before, after in zip(first.images, report.images, strict=True):
        assert after.digest == before.digest and after.log is None
        service = after.name.rsplit("/", 1)[1]
        assert app.manifest(service, "feature").headers["Docker-Content-Digest"] == before.digest


def test_failing_dockerfile_ends_failed_with_log_tail_and_no_tag(app: AppRepo) -> None:
    app.commit({"backend/Dockerfile": dockerfile(app.stack, "echo about to fail && exit 3")})
    event = app.push("main")
    report = app.build(event)
    [failed] = report.images
    assert failed.status == "failed" and failed.name == app.image("backend")
    assert "exit status 3" in failed.log_tail and "about to fail" in failed.log_tail
    assert failed.log is not None and failed.log_tail.splitlines()[-1] in Path(failed.log).read_text()
    assert app.manifest("backend", event.after[:7]).status_code == 404
    assert app.manifest("backend", "main").status_code == 404


def test_build_over_its_timeout_is_killed_quickly(app: AppRepo) -> None:
    app.commit({"frontend/Dockerfile": dockerfile(app.stack, f"sleep 30 # {app.uid}")})
    started = time.monotonic()
    report = app.build(app.push("main"), timeout=3)
    elapsed = time.monotonic() - started
    [failed] = report.images
    assert failed.status == "failed" and failed.reason.startswith("timeout")
    assert elapsed < 15, f"took {elapsed:.1f}s"
    assert app.manifest("frontend", "main").status_code == 404


def test_should_continue_false_mid_build_marks_superseded_and_pushes_nothing(app: AppRepo) -> None:
    app.commit({"frontend/Dockerfile": dockerfile(app.stack, f"sleep 30 # {app.uid}")})
    deadline = time.monotonic() + 2
    started = time.monotonic()
    report = app.build(app.push("main"), should_continue=lambda: time.monotonic() < deadline)
    [stopped] = report.images
    assert stopped.status == "superseded"
    assert time.monotonic() - started < 15
    assert app.manifest("frontend", "main").status_code == 404


def test_release_tag_push_tags_the_image_with_the_release(app: AppRepo) -> None:
    config = app.config([{"name": app.image("backend"), "context": "backend"}])
    event = app.push_tag("1.2.3", annotated=True)
    report = app.build(event, config)
    [image] = report.images
    assert image.status == "built" and image.tags == ("1.2.3",)
    commit = app.pushed["refs/heads/main"]
    assert event.after != commit and report.sha == commit
    manifest = app.manifest("backend", "1.2.3")
    assert manifest.headers["Docker-Content-Digest"] == image.digest
    labels = app.config_blob("backend", manifest.json())["config"]["Labels"]
    assert labels["org.opencontainers.image.revision"] == commit


def test_report_is_json_safe(app: AppRepo) -> None:
    app.commit({"backend/app.sh": "#!/bin/sh\necho v2\n"})
    data = app.build(app.push("main")).to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["images"][0]["status"] == "built" and data["images"][0]["duration_seconds"] > 0


def test_a_rebuild_reuses_the_layer_cache(app: AppRepo) -> None:
    app.commit({"backend/app.sh": "#!/bin/sh\necho one\n"})
    first = app.build(app.push("main")).images[0]
    app.commit({"backend/app.sh": "#!/bin/sh\necho two\n"})
    second = app.build(app.push("main")).images[0]
    assert (first.status, second.status) == ("built", "built")
    assert second.log is not None and "Using cache" in Path(second.log).read_text()


def test_shiplines_own_commit_never_builds(app: AppRepo) -> None:
    app.commit({"frontend/index.html": "<h1>bumped</h1>\n"},
               message="chore(staging): bump shop/frontend\n\nShipline-Event: e1\nShipline-Bot: true")
    report = app.build(app.push("main"))
    assert report.images == ()
    assert "Shipline's own commit" in (report.nothing_to_build_reason or "")
    assert app.builder.calls == []


@pytest.mark.parametrize("at_push", [True, False], ids=["keys set by the push", "keys as a LABEL step"])
def test_a_rebuild_of_the_same_commit_is_fully_cached_and_the_same_image(app: AppRepo, at_push: bool) -> None:
    if not at_push:
        app.keys_as_build_step()
    config = app.config([{"name": app.image("frontend"), "context": "frontend"}])
    event = app.event("refs/heads/main", "0" * 40, app.pushed["refs/heads/main"])
    first = app.build(event, config).images[0]
    for record in (app.stack.state_dir / "build-index").glob(f"*{app.uid}*/*.json"):
        record.unlink()
    again = app.build(event, config).images[0]
    assert (first.status, again.status) == ("built", "built")
    log = Path(again.log or "").read_text()
    if at_push:
        assert "LABEL" not in log and "--label org.opencontainers.image.revision=" in log
    else:
        assert log.count("LABEL ") == 1 and "--label" not in log
    assert again.digest == first.digest
