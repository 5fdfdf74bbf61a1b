"""One ``deployment.yaml``: rendered, read, checked against kluctl's schema, with the line of every
deployment item and vars source so errors can point at them.

kluctl reads these files strictly (unknown keys are errors), and so do we. What Shipline cannot do
offline or does not implement is refused with the item's file and line rather than ignored:
git/oci includes, ``deleteObjects``, ``waitReadinessObjects``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from handlers.sync.kluctl import jinja
from handlers.sync.manifestio import RenderError, parse_mapping, rel

CONFIG_FILES = ("deployment.yaml", "deployment.yml")
PROJECT_KEYS = {"vars", "when", "deployments", "commonLabels", "commonAnnotations", "overrideNamespace", "tags",
                "ignoreForDiff", "conflictResolution"}
ITEM_KEYS = {"path", "include", "git", "oci", "deleteObjects", "tags", "barrier", "message", "recursive",
             "waitReadiness", "waitReadinessObjects", "args", "passVars", "vars", "skipDeleteIfTags",
             "onlyRender", "alwaysDeploy", "when"}
UNSUPPORTED_ITEM_KEYS = {
    "git": "git includes (a sync reads only its own repository)",
    "oci": "oci includes (a sync reads only its own repository)",
    "deleteObjects": "deleteObjects",
    "waitReadinessObjects": "waitReadinessObjects",
}
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class DeploymentConfig:
    shown: str
    """The file, repo-relative, for messages."""
    data: dict[str, Any]
    item_lines: list[int] = field(default_factory=list)
    vars_lines: list[int] = field(default_factory=list)

    def item_origin(self, index: int) -> str:
        line = self.item_lines[index] if index < len(self.item_lines) else "?"
        return f"{self.shown}, line {line}: deployments[{index}]"

    def vars_origin(self, index: int) -> str:
        line = self.vars_lines[index] if index < len(self.vars_lines) else "?"
        return f"{self.shown}, line {line}: vars[{index}]"

    @property
    def items(self) -> list[dict[str, Any]]:
        return self.data.get("deployments") or []


def find_config(directory: Path) -> Path | None:
    for name in CONFIG_FILES:
        if (directory / name).is_file():
            return directory / name
    return None


def load_config(path: Path, root: Path, search_dirs: list[Path], variables: dict[str, Any]) -> DeploymentConfig:
    """``path`` rendered with ``variables`` (kluctl renders deployment.yaml before reading it), checked."""
    shown = rel(path, root)
    text = jinja.render_file(jinja.environment(root, search_dirs), path, variables)
    data = parse_mapping(text, origin=f"{shown} (rendered)")
    config = DeploymentConfig(shown, data, *_lines(text))
    _check(config)
    return config


def _check(config: DeploymentConfig) -> None:
    unknown = set(config.data) - PROJECT_KEYS
    if unknown:
        raise RenderError(f"{config.shown}: unknown keys {sorted(unknown)} (known: {sorted(PROJECT_KEYS)})")
    items = config.data.get("deployments") or []
    if not isinstance(items, list):
        raise RenderError(f"{config.shown}: deployments must be a list")
    for key in ("commonLabels", "commonAnnotations"):
        value = config.data.get(key) or {}
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise RenderError(f"{config.shown}: {key} must map names to strings (quote numbers and booleans)")
    for index, item in enumerate(items):
        _check_item(item, config.item_origin(index))


def _check_item(item: Any, origin: str) -> None:
    if not isinstance(item, dict):
        raise RenderError(f"{origin}: a deployment item must be a mapping")
    unknown = set(item) - ITEM_KEYS
    if unknown:
        raise RenderError(f"{origin}: unknown keys {sorted(unknown)}")
    for key, what in UNSUPPORTED_ITEM_KEYS.items():
        if item.get(key):
            raise RenderError(f"{origin}: {what} are not supported by Shipline's kluctl mode")
    if "path" in item and "include" in item:
        raise RenderError(f"{origin}: only one of path and include can be set")
    if item.get("recursive") and "path" not in item:
        raise RenderError(f"{origin}: recursive can only be set with path")
    if item.get("waitReadiness") and "path" not in item:
        raise RenderError(f"{origin}: only path items can have waitReadiness")
    if (item.get("args") or item.get("passVars")) and "include" not in item:
        raise RenderError(f"{origin}: args and passVars are only allowed on includes")
    for key in ("path", "include"):
        if key in item and (not isinstance(item[key], str) or not item[key]):
            raise RenderError(f"{origin}: {key} must be a non-empty string")


def _lines(text: str) -> tuple[list[int], list[int]]:
    """Lines (1-based) of the entries of the top-level ``deployments`` and ``vars``."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError:
        return [], []
    lines: dict[str, list[int]] = {"deployments": [], "vars": []}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value in lines and isinstance(value, yaml.SequenceNode):
                lines[key.value] = [entry.start_mark.line + 1 for entry in value.value]
    return lines["deployments"], lines["vars"]
