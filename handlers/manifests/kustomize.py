"""``kustomization.yaml`` ``images:`` entries: ``name``/``newName`` select, ``newTag``/``digest`` change."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from handlers.images import same_image
from handlers.manifests.markers import Rewrite
from handlers.manifests.model import ImageUpdate
from handlers.manifests.nodes import mapping_get

MARKER = "kustomize:images"


def image_entries(doc: Node) -> Iterator[MappingNode]:
    images = mapping_get(doc, "images") if isinstance(doc, MappingNode) else None
    if isinstance(images, SequenceNode):
        yield from (e for e in images.value if isinstance(e, MappingNode))


def entry_rewrites(entry: MappingNode, updates: Sequence[ImageUpdate]) -> Iterator[tuple[ScalarNode, Rewrite]]:
    """(scalar, rewrite) pairs for the entry's ``newTag`` and ``digest`` if an update selects it."""
    names = [_text(mapping_get(entry, k)) for k in ("name", "newName")]
    update = next((u for u in updates if any(n and same_image(n, u.image) for n in names)), None)
    if update is None:
        return
    tag, digest = mapping_get(entry, "newTag"), mapping_get(entry, "digest")
    has_tag, has_digest = isinstance(tag, ScalarNode), isinstance(digest, ScalarNode)
    problem = _problem(update, has_tag, has_digest)
    if problem:
        yield entry.value[0][1], Rewrite(update, warning=problem)
        return
    if isinstance(tag, ScalarNode):
        yield tag, Rewrite(update, update.tag, tag.value)
    if isinstance(digest, ScalarNode):
        yield digest, Rewrite(update, update.digest, None)


def _problem(update: ImageUpdate, has_tag: bool, has_digest: bool) -> str:
    if has_digest and not update.digest:
        return f"images entry for {update.image} pins a digest; the update has none (entry left alone)"
    if not has_tag and not has_digest:
        return f"images entry for {update.image} has no newTag or digest to edit"
    return ""


def _text(node: Node | None) -> str | None:
    return str(node.value) if isinstance(node, ScalarNode) else None
