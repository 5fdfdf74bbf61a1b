"""Image tags from templates: ``{short_sha}``, ``{sha}``, ``{branch}``, ``{describe}``, ``{tag}``.

``{describe}`` follows ``git describe --tags --first-parent --match '[0-9]*.[0-9]*.[0-9]*'``:
``1.0.0`` exactly at a release tag, ``1.0.0-15-g320628b`` fifteen first-parent commits later,
``0.0.0-<count>-g<short>`` before any release. ``{branch}`` and the other dynamic values are
sanitized to the OCI tag grammar; literal template text must already be valid.

A tag push uses ``["{tag}"]`` unless the image sets ``tags`` explicitly. Templates naming a value
the push does not have (``{tag}`` on a branch push, ``{branch}`` on a tag push) are left out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from handlers.build.mirror import Mirror
from handlers.events import GitPushed
from handlers.settings import ImageBuildConfig
from handlers.validate import validate_sha, validate_tag

RELEASE_GLOB = "[0-9]*.[0-9]*.[0-9]*"
SHORT = 7
MAX_TAG = 128
_INVALID = re.compile(r"[^A-Za-z0-9._-]+")
_PLACEHOLDER = re.compile(r"{(\w*)}")


def sanitize_tag(value: str) -> str:
    """Map any text into ``[A-Za-z0-9_][A-Za-z0-9._-]{0,127}``: ``feature/Login`` → ``feature-Login``."""
    text = _INVALID.sub("-", value).lstrip(".-")[:MAX_TAG]
    return validate_tag(text or "_", field="tag value")


@dataclass(frozen=True, slots=True)
class TagValues:
    """What placeholders expand to for one push; ``None`` when the push has no such value."""

    sha: str
    describe: str | None
    """None when no template of the repo names ``{describe}`` (it was not computed)."""
    branch: str | None = None
    tag: str | None = None

    @property
    def short_sha(self) -> str:
        return self.sha[:SHORT]

    def lookup(self, name: str) -> str | None:
        raw = {"sha": self.sha, "short_sha": self.short_sha, "describe": self.describe,
               "branch": self.branch, "tag": self.tag}[name]
        return None if raw is None else sanitize_tag(raw)


def describe(mirror: Mirror, sha: str) -> str:
    """The seed's ``git describe`` against the latest X.Y.Z tag on the first-parent line."""
    validate_sha(sha)
    out = mirror.try_run("describe", "--tags", "--first-parent", "--long", "--match", RELEASE_GLOB, sha)
    if out is None:
        count = mirror.run("rev-list", "--count", "--first-parent", sha)
        return f"0.0.0-{int(count)}-g{sha[:SHORT]}"
    tag, distance, _ = out.rsplit("-", 2)
    return tag if distance == "0" else f"{tag}-{int(distance)}-g{sha[:SHORT]}"


def values_for(mirror: Mirror, event: GitPushed, commit: str, *, with_describe: bool = True) -> TagValues:
    """Placeholder values for ``event``; ``commit`` is ``event.after`` peeled to a commit.
    ``with_describe=False`` (no template needs it, ``needs_describe``) spares the ``git describe``."""
    return TagValues(sha=validate_sha(commit), describe=describe(mirror, commit) if with_describe else None,
                     branch=event.short_ref if event.is_branch else None,
                     tag=event.short_ref if event.is_tag else None)


def templates_for(image: ImageBuildConfig, event: GitPushed) -> list[str]:
    if event.is_tag and "tags" not in image.model_fields_set:
        return ["{tag}"]
    return list(image.tags)


def needs_describe(images: Sequence[ImageBuildConfig], event: GitPushed) -> bool:
    """Whether any of ``images`` tags this push with ``{describe}`` (which needs the remote's tags)."""
    return any("describe" in _PLACEHOLDER.findall(t) for image in images for t in templates_for(image, event))


def render(templates: Sequence[str], values: TagValues) -> tuple[str, ...]:
    """Rendered, validated, de-duplicated tags in template order; unusable templates left out."""
    tags: list[str] = []
    for template in templates:
        tag = _render_one(template, values)
        if tag is not None and tag not in tags:
            tags.append(validate_tag(tag, field=f"tag template {template!r}"))
    return tuple(tags)


def _render_one(template: str, values: TagValues) -> str | None:
    names = _PLACEHOLDER.findall(template)
    found = {name: values.lookup(name) for name in names}
    if any(v is None for v in found.values()):
        return None
    return _PLACEHOLDER.sub(lambda m: str(found[m.group(1)]), template)
