"""The fields Shipline owns on a live object, read from server-side apply's ``managedFields``.

After an apply, the object's ``managedFields`` entry for the ``shipline`` manager lists exactly the
fields the manifest set (``fieldsV1``, a trie of ``f:<field>``, ``k:<list item key>``,
``v:<set value>``, ``i:<index>``). The values at those fields, with the trie itself, hash to
``owned_hash``: it does not move when a controller writes ``status`` or another manager sets a
field Shipline never set, and it does move when someone changes a field Shipline set (the value
differs) or takes it over (an update transfers ownership, so the field leaves Shipline's trie).
That is the drift test, from one watch event, with no request.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from handlers.sync.objects import MANAGER, Obj

_MISSING = "<missing>"


@dataclass(frozen=True, slots=True)
class Writer:
    """Another field manager of an object, for "who changed it"."""

    manager: str
    operation: str
    time: str
    paths: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.manager} ({self.operation} at {self.time})"


def owned_fields(obj: Obj, manager: str = MANAGER) -> dict[str, Any] | None:
    """The ``fieldsV1`` trie of ``manager``'s apply entry, or None when it owns nothing."""
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") == manager and entry.get("operation") == "Apply":
            return entry.get("fieldsV1") or {}
    return None


def owned_hash(obj: Obj, manager: str = MANAGER) -> str:
    """Hash of the fields ``manager`` owns and their values ("" when it owns none)."""
    fields = owned_fields(obj, manager)
    if fields is None:
        return ""
    canonical = json.dumps([fields, _project(obj, fields)], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


def field_paths(fields: dict[str, Any], prefix: str = "") -> set[str]:
    """``{"f:spec": {"f:replicas": {}}}`` → ``{"spec.replicas"}`` (list items as ``[key]``)."""
    out: set[str] = set()
    for key, sub in fields.items():
        if key == ".":
            continue
        kind, _, name = key.partition(":")
        path = f"{prefix}.{name}" if kind == "f" and prefix else name if kind == "f" else f"{prefix}[{name}]"
        children = {k: v for k, v in (sub or {}).items() if k != "."}
        out |= field_paths(children, path) if children else {path}
    return out


def other_writers(obj: Obj, manager: str = MANAGER) -> tuple[Writer, ...]:
    """Every other manager that wrote the object's spec or data, newest first."""
    writers = []
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") == manager or entry.get("subresource") == "status":
            continue
        paths = tuple(sorted(p for p in field_paths(entry.get("fieldsV1") or {}) if not p.startswith("status")))
        if paths:
            writers.append(Writer(str(entry.get("manager")), str(entry.get("operation")), str(entry.get("time", "")),
                                  paths))
    return tuple(sorted(writers, key=lambda w: w.time, reverse=True))


def _project(value: Any, fields: dict[str, Any]) -> Any:
    out: dict[str, Any] = {}
    for key, sub in fields.items():
        if key == ".":
            continue
        child = _child(value, key)
        children = {k: v for k, v in (sub or {}).items() if k != "."}
        out[key] = _MISSING if child is _ABSENT else (_project(child, children) if children else child)
    return out


_ABSENT = object()


def _child(value: Any, key: str) -> Any:
    kind, _, name = key.partition(":")
    if kind == "f":
        return value.get(name, _ABSENT) if isinstance(value, dict) else _ABSENT
    if not isinstance(value, list):
        return _ABSENT
    if kind == "k":
        wanted = json.loads(name)
        return next((item for item in value if isinstance(item, dict)
                     and all(item.get(k) == v for k, v in wanted.items())), _ABSENT)
    if kind == "v":
        item = json.loads(name)
        return item if item in value else _ABSENT
    if kind == "i" and name.isdigit() and int(name) < len(value):
        return value[int(name)]
    return _ABSENT
