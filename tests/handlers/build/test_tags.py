"""Tag templates and the OCI tag grammar (pure: no git, no stack)."""

from __future__ import annotations

import pytest

from handlers.build.tags import TagValues, needs_describe, render, sanitize_tag, templates_for
from handlers.errors import UnsafeInput
from handlers.events import ZERO_SHA, GitPushed
from handlers.settings import ImageBuildConfig

SHA = "320628b5e0c5a1f6a0d4c8f5b6b7e8f9a0b1c2d3"


@pytest.mark.parametrize(("raw", "tag"), [
    ("main", "main"),
    ("feature/Login-Page", "feature-Login-Page"),
    ("fix/#123 crash", "fix-123-crash"),
    ("-leading", "leading"),
    (".hidden/x", "hidden-x"),
    ("_ok", "_ok"),
    ("ünïcode", "n-code"),
    ("x" * 300, "x" * 128),
    ("///", "_"),
])
def test_sanitize_maps_any_text_into_the_oci_tag_grammar(raw: str, tag: str) -> None:
    assert sanitize_tag(raw) == tag


BRANCH = TagValues(sha=SHA, describe="1.0.0-15-g320628b", branch="feature/login")
RELEASE = TagValues(sha=SHA, describe="1.2.3", tag="1.2.3")


def test_render_expands_every_placeholder() -> None:
    tags = render(["{short_sha}", "{sha}", "{branch}-{short_sha}", "{describe}", "v{describe}"], BRANCH)
    assert tags == ("320628b", SHA, "feature-login-320628b", "1.0.0-15-g320628b", "v1.0.0-15-g320628b")


def test_render_leaves_out_templates_the_push_has_no_value_for() -> None:
    assert render(["{tag}", "{branch}"], BRANCH) == ("feature-login",)
    assert render(["{tag}", "{branch}"], RELEASE) == ("1.2.3",)


def test_render_drops_duplicates_keeping_order() -> None:
    assert render(["{describe}", "{tag}", "latest"], RELEASE) == ("1.2.3", "latest")


def test_invalid_literal_text_is_refused() -> None:
    with pytest.raises(UnsafeInput):
        render(["bad tag {short_sha}"], BRANCH)


def event(ref: str) -> GitPushed:
    return GitPushed(repo="o/r", ref=ref, before=ZERO_SHA, after=SHA, changed_paths=(), pusher="p",
                     delivery_id="d", source="gitea")


def test_a_tag_push_defaults_to_just_that_tag() -> None:
    image = ImageBuildConfig(name="reg.example/app")
    assert templates_for(image, event("refs/tags/1.2.3")) == ["{tag}"]
    assert templates_for(image, event("refs/heads/main")) == ["{describe}"]


def test_explicit_tags_apply_to_tag_pushes_too() -> None:
    image = ImageBuildConfig(name="reg.example/app", tags=["{tag}", "stable"])
    assert templates_for(image, event("refs/tags/1.2.3")) == ["{tag}", "stable"]


def test_describe_and_so_every_ref_is_needed_only_when_a_template_names_it() -> None:
    default = ImageBuildConfig(name="reg.example/app")
    pinned = ImageBuildConfig(name="reg.example/api", tags=["{short_sha}", "{branch}"])
    assert needs_describe([default, pinned], event("refs/heads/main"))
    assert not needs_describe([pinned], event("refs/heads/main"))
    assert not needs_describe([default], event("refs/tags/1.2.3")), "a tag push tags with {tag}"
    assert needs_describe([ImageBuildConfig(name="r.example/x", tags=["v{describe}-x"])], event("refs/tags/1.2.3"))
