"""Field-level differences between a live object and what a server-side apply would make of it.

The prediction comes from the API server itself (``dryRun=All`` apply), so defaulting and
normalisation (``0.5`` CPU → ``500m``) never show up as differences. Server-owned bookkeeping
(``resourceVersion``, ``managedFields``, ``generation``, ``status`` ...) is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from handlers.sync.objects import ANNOTATION_DIGEST, ANNOTATION_REVISION, Obj

IGNORED_METADATA = frozenset({"resourceVersion", "managedFields", "generation", "uid", "creationTimestamp",
                              "selfLink"})
SHIPLINE_ANNOTATIONS = frozenset({ANNOTATION_REVISION, ANNOTATION_DIGEST})
_MISSING = object()


@dataclass(frozen=True)
class FieldChange:
    """``path`` like ``spec.template.spec.containers[app].image``; ``None`` means absent."""

    path: str
    live: Any
    desired: Any

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "live": self.live, "desired": self.desired}

    def __str__(self) -> str:
        return f"{self.path}: {self.live!r} -> {self.desired!r}"


def field_changes(live: Obj, predicted: Obj, *, ignore_annotations: frozenset[str] = frozenset()) -> list[FieldChange]:
    """Every leaf that differs between ``live`` and ``predicted`` (status and bookkeeping ignored)."""
    out: list[FieldChange] = []
    _walk("", _clean(live, ignore_annotations), _clean(predicted, ignore_annotations), out)
    return out


def _clean(obj: Obj, ignore_annotations: frozenset[str]) -> Obj:
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in IGNORED_METADATA}
    if "annotations" in meta:
        meta["annotations"] = {k: v for k, v in meta["annotations"].items() if k not in ignore_annotations}
    return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": meta}


def _walk(path: str, live: Any, desired: Any, out: list[FieldChange]) -> None:
    if isinstance(live, dict) and isinstance(desired, dict):
        for key in sorted(set(live) | set(desired), key=str):
            _walk(_join(path, str(key)), live.get(key, _MISSING), desired.get(key, _MISSING), out)
    elif isinstance(live, list) and isinstance(desired, list) and _named(live) and _named(desired):
        by_name_live = {item["name"]: item for item in live}
        by_name_desired = {item["name"]: item for item in desired}
        for name in list(dict.fromkeys([*by_name_live, *by_name_desired])):
            _walk(f"{path}[{name}]", by_name_live.get(name, _MISSING), by_name_desired.get(name, _MISSING), out)
    elif isinstance(live, list) and isinstance(desired, list) and len(live) == len(desired):
        for index, (a, b) in enumerate(zip(live, desired, strict=True)):
            _walk(f"{path}[{index}]", a, b, out)
    elif live != desired:
        out.append(FieldChange(path, _value(live), _value(desired)))


def _named(items: list[Any]) -> bool:
    names = [item.get("name") for item in items if isinstance(item, dict)]
    return len(names) == len(items) and None not in names and len(set(names)) == len(names)


def _join(path: str, key: str) -> str:
    if "." in key or "/" in key:
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _value(value: Any) -> Any:
    return None if value is _MISSING else value
