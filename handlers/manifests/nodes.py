"""Locate scalars with ruamel.yaml's round-trip composer; compare two node trees.

We only compose (never construct), so aliases are not expanded; the expanded size is still
checked against ``handlers.yamlsafe``'s budget so a bomb is refused before any walk.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from handlers.errors import ConfigError
from handlers.yamlsafe import MAX_EXPANDED_NODES, YamlBomb, expanded_size


@dataclass(frozen=True, slots=True)
class Scalar:
    """A value scalar and where it sits: its own key, its mapping, and that mapping's key."""

    node: ScalarNode
    key: str | None
    mapping: MappingNode | None
    parent_key: str | None


def compose(text: str, origin: str) -> list[Node]:
    """All documents as node trees; ``ConfigError`` (or ``YamlBomb``) when unusable."""
    try:
        docs = [d for d in YAML(typ="rt").compose_all(io.StringIO(text)) if d is not None]
    except YAMLError as exc:
        raise ConfigError(f"{origin}: not valid YAML: {str(exc).splitlines()[0]}") from None
    budget = 0
    for doc in docs:
        budget += expanded_size(doc)
        if budget > MAX_EXPANDED_NODES:
            raise YamlBomb(f"{origin}: YAML expands past {MAX_EXPANDED_NODES} nodes; refused")
    return docs


def scalars(doc: Node) -> Iterator[Scalar]:
    """Every value scalar once (an aliased node is reported at its anchor), keys excluded."""
    yield from _walk(doc, None, None, None, set())


def _walk(node: Node, key: str | None, mapping: MappingNode | None, parent_key: str | None,
          seen: set[int]) -> Iterator[Scalar]:
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, ScalarNode):
        yield Scalar(node, key, mapping, parent_key)
    elif isinstance(node, SequenceNode):
        for child in node.value:
            yield from _walk(child, None, None, key, seen)
    elif isinstance(node, MappingNode):
        for k, v in node.value:
            name = k.value if isinstance(k, ScalarNode) else None
            yield from _walk(v, name, node, key, seen)


def value_span(text: str, node: ScalarNode) -> tuple[int, int] | None:
    """Offsets of the value's characters (inside quotes, after any anchor or tag), or None.

    Only single-line plain or quoted scalars whose source spells the value literally (no
    escapes) qualify: everything else cannot be spliced safely.
    """
    start, end = node.start_mark.index, node.end_mark.index
    if node.start_mark.line != node.end_mark.line or not node.value:
        return None
    raw, value = text[start:end], node.value
    if node.style is None and raw.endswith(value):
        return end - len(value), end
    if node.style in ('"', "'") and raw.endswith(f"{node.style}{value}{node.style}"):
        return end - 1 - len(value), end - 1
    return None


def rest_of_line(text: str, offset: int) -> str:
    newline = text.find("\n", offset)
    return text[offset : len(text) if newline < 0 else newline].rstrip("\r")


def mapping_get(mapping: MappingNode, key: str) -> Node | None:
    return next((v for k, v in mapping.value if isinstance(k, ScalarNode) and k.value == key), None)


def first_difference(a: Node, b: Node, expected: dict[int, str]) -> str | None:
    """Where two trees differ, ignoring scalars listed in ``expected`` (id → required new value)."""
    return _diff(a, b, expected, {})


def _diff(a: Node, b: Node, expected: dict[int, str], pairs: dict[int, int]) -> str | None:
    if id(a) in pairs:
        return None if pairs[id(a)] == id(b) else f"alias structure changed near line {a.start_mark.line + 1}"
    pairs[id(a)] = id(b)
    where = f"line {a.start_mark.line + 1}"
    if isinstance(a, ScalarNode) and isinstance(b, ScalarNode) and str(a.tag) != str(b.tag):
        return f"{where}: {a.value!r} ({_kind(a)}) would become {b.value!r} ({_kind(b)}); quote the value"
    if type(a) is not type(b) or str(a.tag) != str(b.tag) or a.anchor != b.anchor:
        return f"{where}: node kind, tag or anchor changed"
    if isinstance(a, ScalarNode):
        want = expected.get(id(a), a.value)
        return None if (b.value, b.style) == (want, a.style) else f"{where}: {a.value!r} became {b.value!r}"
    if len(a.value) != len(b.value):
        return f"{where}: collection size changed"
    children = a.value if isinstance(a, SequenceNode) else [n for kv in a.value for n in kv]
    others = b.value if isinstance(b, SequenceNode) else [n for kv in b.value for n in kv]
    return next((d for x, y in zip(children, others, strict=True) if (d := _diff(x, y, expected, pairs))), None)


def _kind(node: Node) -> str:
    return str(node.tag).rsplit(":", 1)[-1]
