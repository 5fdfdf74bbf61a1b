"""Load untrusted YAML safely: no tags that build objects, and no alias bombs.

A billion-laughs document is small on disk but expands exponentially through aliases; we
measure the expanded size on the composed node graph (memoized, so measuring is linear) and
refuse past a budget before anything is constructed.
"""

from __future__ import annotations

import io
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import MappingNode, Node, SequenceNode

from handlers.errors import ConfigError

MAX_EXPANDED_NODES = 1_000_000
MAX_DEPTH = 200


class YamlBomb(ConfigError):
    """The YAML would expand past the node budget or nest too deep."""


def expanded_size(node: Node, memo: dict[int, int] | None = None, depth: int = 0) -> int:
    memo = {} if memo is None else memo
    if depth > MAX_DEPTH:
        raise YamlBomb(f"YAML nests deeper than {MAX_DEPTH} levels")
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = MAX_EXPANDED_NODES + 1  # a cycle counts as unbounded
    total = 1
    if isinstance(node, SequenceNode):
        for child in node.value:
            total += expanded_size(child, memo, depth + 1)
    elif isinstance(node, MappingNode):
        for k, v in node.value:
            total += expanded_size(k, memo, depth + 1) + expanded_size(v, memo, depth + 1)
    memo[key] = total
    return total


def load_yaml_all(text: str, *, origin: str = "<yaml>") -> list[Any]:
    """All documents of ``text`` as plain data; raises ``ConfigError`` naming ``origin``."""
    yaml = YAML(typ="safe", pure=True)
    try:
        nodes = list(yaml.compose_all(io.StringIO(text)))
    except YAMLError as exc:
        raise ConfigError(f"{origin}: not valid YAML: {exc}") from None
    budget = 0
    for node in nodes:
        if node is None:
            continue
        budget += expanded_size(node)
        if budget > MAX_EXPANDED_NODES:
            raise YamlBomb(
                f"{origin}: YAML expands past {MAX_EXPANDED_NODES} nodes through aliases "
                "(a 'billion laughs' document?); refused"
            )
    try:
        return [doc for doc in YAML(typ="safe", pure=True).load_all(io.StringIO(text))]
    except YAMLError as exc:
        raise ConfigError(f"{origin}: not valid YAML: {exc}") from None


def load_yaml_text(text: str, *, origin: str = "<yaml>") -> Any:
    docs = load_yaml_all(text, origin=origin)
    if len(docs) > 1:
        raise ConfigError(f"{origin}: expected one YAML document, found {len(docs)}")
    return docs[0] if docs else None
