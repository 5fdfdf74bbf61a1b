"""Reading manifests out of a checkout safely, shared by every render mode.

Files must stay inside the checkout (symlinks out are refused) and under ``MAX_FILE_BYTES``; all
YAML goes through ``handlers.yamlsafe`` (no object tags, no alias bombs, no duplicate keys). Every
failure is a ``RenderError`` whose message names the file and, when known, the line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from handlers.errors import ConfigError, PermanentError
from handlers.sync.objects import Obj
from handlers.yamlsafe import load_yaml_all, load_yaml_text

MAX_FILE_BYTES = 4 * 1024 * 1024


class RenderError(PermanentError):
    """The manifests cannot be rendered at this revision; the message names file and line."""


def parse_objects(text: str, *, origin: str) -> list[Obj]:
    """Kubernetes objects from a multi-document YAML text; ``List`` kinds are expanded."""
    objects: list[Obj] = []
    for index, doc in enumerate(parse_documents(text, origin=origin), 1):
        if doc is None or _is_kustomization(doc):
            continue
        items = doc.get("items") if isinstance(doc, dict) and doc.get("kind") == "List" else [doc]
        objects += [_checked(item, origin, index) for item in items or []]
    return objects


def parse_documents(text: str, *, origin: str) -> list[Any]:
    try:
        return load_yaml_all(text, origin=origin)
    except ConfigError as exc:
        raise RenderError(str(exc)) from None


def parse_mapping(text: str, *, origin: str) -> dict[str, Any]:
    """One YAML document that must be a mapping (an empty document is an empty mapping)."""
    try:
        data = load_yaml_text(text, origin=origin)
    except ConfigError as exc:
        raise RenderError(str(exc)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RenderError(f"{origin}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``: mappings merge key by key, anything else is replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def inside(root: Path, path: Path, shown: str) -> Path:
    """``path`` resolved, refused unless it stays in ``root`` (itself resolved)."""
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        raise RenderError(f"{shown}: resolves outside the repository (symlink?); refused")
    return resolved


def read_text(path: Path, shown: str | None = None) -> str:
    shown = shown or path.name
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise RenderError(f"{shown}: larger than {MAX_FILE_BYTES} bytes; refused")
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise RenderError(f"{shown}: cannot read: {exc}") from None


def rel(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)


def _is_kustomization(doc: Any) -> bool:
    return isinstance(doc, dict) and str(doc.get("apiVersion", "")).startswith("kustomize.config.k8s.io/")


def _checked(doc: Any, origin: str, index: int) -> Obj:
    where = f"{origin}: document {index}"
    if not isinstance(doc, dict):
        raise RenderError(f"{where}: expected a mapping (a Kubernetes object), got {type(doc).__name__}")
    meta = doc.get("metadata")
    if not doc.get("apiVersion") or not doc.get("kind") or not isinstance(meta, dict) or not meta.get("name"):
        raise RenderError(f"{where}: an object needs apiVersion, kind and metadata.name")
    return doc
