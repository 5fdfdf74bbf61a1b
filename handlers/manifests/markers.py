"""Turn a marked scalar into a rewrite: seed comment markers and Flux ``$imagepolicy`` setters."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ruamel.yaml.nodes import ScalarNode

from handlers.globs import matches
from handlers.images import ImageRef, normalize_image, same_image
from handlers.manifests.model import ImageUpdate
from handlers.manifests.nodes import Scalar, mapping_get

NAME_KEYS = ("repository", "image", "name")
FLUX_RE = re.compile(r"^\s*#\s*(\{.*\})\s*$")


@dataclass(frozen=True, slots=True)
class Rewrite:
    """The new value for one scalar, for one update; ``warning`` set means: skip it."""

    update: ImageUpdate | None
    new: str = ""
    current_tag: str | None = None
    warning: str = ""


def seed_regex(markers: Sequence[str]) -> re.Pattern[str] | None:
    if not markers:
        return None
    names = "|".join(re.escape(m) for m in sorted(markers, key=len, reverse=True))
    return re.compile(rf"^\s*#\s*(?P<marker>{names})(?::(?P<qualifier>[^\s#]+))?(?=\s|$)")


def name_matches(name: str, image: str) -> bool:
    """``name`` is the image itself or a ``/``-suffix of it (``frontend``, ``org/frontend``)."""
    short, full = normalize_image(name), normalize_image(image)
    return short == full or full.endswith("/" + short)


def looks_like_ref(value: str) -> bool:
    return any(ch in value for ch in "/:@")


def rewrite_ref(value: str, update: ImageUpdate, *, rename: bool = False) -> Rewrite:
    """Replace tag (and digest when the ref has one or the update pins) of a full reference."""
    ref = ImageRef.parse(value)
    if ref.digest and not update.digest:
        return Rewrite(update, warning=f"{value!r} pins a digest but the update for {update.image} has none")
    digest = update.digest if (ref.digest or update.pin_digest) and update.digest else None
    name = update.image if rename else ref.name
    return Rewrite(update, ImageRef(name, update.tag, digest).format(), ref.tag)


def default_files(image: str) -> list[str]:
    """The seed's monorepo shape: ``services/<name>/config/`` holds the vars of the image ``<name>``."""
    return [f"**/services/{image.rsplit('/', 1)[-1]}/config/**"]


def file_owner(rel: str, images: Sequence[str], image_files: Mapping[str, Sequence[str]]) -> str | None:
    """The one image whose ``files`` globs (default: ``default_files``) match ``rel``, else None."""
    owners = [image for image in images if matches(rel, _globs(image, image_files))]
    return owners[0] if len(owners) == 1 else None


def _globs(image: str, image_files: Mapping[str, Sequence[str]]) -> Sequence[str]:
    configured = next((globs for name, globs in image_files.items() if same_image(name, image)), None)
    return default_files(image) if configured is None else configured


def seed_rewrite(scalar: Scalar, qualifier: str | None, updates: Sequence[ImageUpdate],
                 known: Sequence[str], owner: str | None = None) -> Rewrite | None:
    """None: the marker belongs to an image not in this batch. ``owner``: see ``file_owner``."""
    value = scalar.node.value
    if looks_like_ref(value):
        name = ImageRef.parse(value).name
        update = next((u for u in updates if same_image(u.image, name)
                       and (qualifier is None or name_matches(qualifier, u.image))), None)
        return None if update is None else rewrite_ref(value, update)
    bound, warning = bind(scalar, qualifier, updates, known, owner)
    if bound is None:
        return Rewrite(None, warning=warning) if warning else None
    update = next((u for u in updates if name_matches(bound, u.image)), None)
    return None if update is None else Rewrite(update, update.tag, value)


def bind(scalar: Scalar, qualifier: str | None, updates: Sequence[ImageUpdate],
         known: Sequence[str], owner: str | None = None) -> tuple[str | None, str]:
    """Which image an unqualified bare-tag marker belongs to (rules in the package docstring)."""
    if qualifier:
        return qualifier, ""
    sibling = _sibling_name(scalar)
    if sibling:
        return sibling, ""
    universe = sorted({*known, *(u.image for u in updates)})
    if scalar.parent_key and any(i.rsplit("/", 1)[-1] == scalar.parent_key for i in universe):
        return scalar.parent_key, ""
    if owner is not None:
        return owner, ""
    if len(universe) == 1:
        return universe[0], ""
    return None, (f"marker on {scalar.node.value!r} is ambiguous between {universe}; "
                  "qualify it as '# MARKER:<image>'")


def _sibling_name(scalar: Scalar) -> str | None:
    if scalar.mapping is None:
        return None
    for key in NAME_KEYS:
        node = mapping_get(scalar.mapping, key)
        if isinstance(node, ScalarNode) and node is not scalar.node and node.value and node.style is None:
            return str(node.value)
    return None


def flux_setter(comment: str) -> str | None:
    """``ns:name[:field]`` from ``# {"$imagepolicy": "..."}``, or None."""
    match = FLUX_RE.match(comment)
    if match is None:
        return None
    try:
        data = json.loads(match.group(1))
    except ValueError:
        return None
    setter = data.get("$imagepolicy") if isinstance(data, dict) else None
    return setter if isinstance(setter, str) else None


def flux_rewrite(scalar: Scalar, setter: str, updates: Sequence[ImageUpdate]) -> Rewrite | None:
    parts = setter.split(":")
    field = parts[2] if len(parts) == 3 else "ref"
    if len(parts) not in (2, 3) or field not in ("ref", "tag", "name", "digest"):
        return Rewrite(None, warning=f"unknown $imagepolicy setter {setter!r}")
    update = next((u for u in updates if u.policy_name == ":".join(parts[:2])), None)
    value = scalar.node.value
    if update is None:
        return None
    if field == "ref":
        return rewrite_ref(value, update, rename=True)
    if field == "tag":
        return Rewrite(update, update.tag, value)
    if field == "name":
        return Rewrite(update, update.image, None)
    if not update.digest:
        return Rewrite(update, warning=f"setter {setter!r} wants a digest; the update has none")
    return Rewrite(update, update.digest, None)
