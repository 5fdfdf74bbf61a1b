"""The kustomize step of a deployment item (kluctl's ``prepareKustomizationYaml`` + ``buildKustomize``).

A rendered item directory without a ``kustomization.yaml`` gets one listing its ``.yaml``/``.yml``
files in name order (``helm-values.yaml`` left out, a ``helm-chart.yaml`` standing for its rendered
output; with ``recursive: true`` every file below); ``overrideNamespace`` becomes the
kustomization's ``namespace`` unless it has one; the annotations ``kluctl.io/barrier`` and
``kluctl.io/wait-readiness`` of the kustomization count for the item. kluctl builds without a
final reordering (resources in the order listed), so ``sortOptions: {order: fifo}`` is added when
the kustomization has none, and ``kubectl kustomize`` prints the same order.

Deviation: kluctl loads files from anywhere inside the project (``LoadRestrictionsNone``); Shipline
keeps kubectl's default (files from the kustomization's own directory tree) and refuses
``resources``/``components`` that are not directories or files of the rendered project, so nothing
outside the repository (another path on the host, a remote URL) is ever read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from handlers.sync.manifestio import RenderError, parse_mapping, read_text

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
RESOURCE_SUFFIXES = (".yaml", ".yml")


def kustomization_file(directory: Path) -> Path | None:
    return next((directory / n for n in KUSTOMIZATION_FILES if (directory / n).is_file()), None)


def generate(directory: Path, recursive: bool, helm_outputs: dict[str, str]) -> dict[str, Any]:
    """kluctl's generated kustomization; ``helm_outputs``: helm-chart.yaml path → its output path."""
    if recursive:
        files = sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())
        nested = [f for f in files if os.path.basename(f) in KUSTOMIZATION_FILES[:2]]
        if nested:
            raise RenderError(f"recursive: true cannot be used with a nested kustomization ({nested[0]})")
    else:
        files = sorted(p.name for p in directory.iterdir() if p.is_file())
    resources: list[str] = []
    for name in files:
        base = os.path.basename(name).lower()
        if base in ("helm-values.yaml", "helm-values.yml"):
            continue
        if base in ("helm-chart.yaml", "helm-chart.yml"):
            output = helm_outputs.get(name, "")  # listed here only if not already a file of the directory
            resource = "" if (directory / output).is_file() else output
        elif base.endswith(RESOURCE_SUFFIXES):
            resource = name
        else:
            continue
        if resource and os.path.normpath(resource) not in resources:
            resources.append(os.path.normpath(resource))
    return {"resources": resources}


def prepare(directory: Path, *, recursive: bool, override_namespace: str | None,
            helm_outputs: dict[str, str], shown: str) -> tuple[bool, bool]:
    """Write the item's final kustomization; return its (barrier, wait-readiness) annotations."""
    existing = kustomization_file(directory)
    if existing is not None and recursive:
        raise RenderError(f"{shown}: recursive: true cannot be used with a kustomization.yaml")
    if existing is None:
        data = generate(directory, recursive, helm_outputs)
        existing = directory / "kustomization.yaml"
    else:
        data = parse_mapping(read_text(existing), origin=f"{shown}/{existing.name} (rendered)")
    if override_namespace and not data.get("namespace"):
        data["namespace"] = override_namespace
    data.setdefault("sortOptions", {"order": "fifo"})
    existing.write_text(yaml.safe_dump(data, sort_keys=False))
    notes = (data.get("metadata") or {}).get("annotations") or {}
    return _true(notes.get("kluctl.io/barrier")), _true(notes.get("kluctl.io/wait-readiness"))


def check_references(render_root: Path) -> None:
    """Every kustomization under ``render_root`` may only refer to what is inside it."""
    for path in sorted(render_root.rglob("*")):
        if path.name not in KUSTOMIZATION_FILES or not path.is_file():
            continue
        shown = str(path.relative_to(render_root))
        data = parse_mapping(read_text(path), origin=f"{shown} (rendered)")
        for key in ("resources", "bases", "components", "crds"):
            for entry in data.get(key) or []:
                target = (path.parent / str(entry)).resolve()
                if (Path(str(entry)).is_absolute() or "://" in str(entry)
                        or render_root not in [target, *target.parents] or not target.exists()):
                    raise RenderError(f"{shown}: {key} entry {entry!r} is not a file or directory of the project "
                                      "(remote and out-of-repository resources are not supported)")
        if data.get("helmCharts") or data.get("helmGlobals"):
            raise RenderError(f"{shown}: kustomize's helmCharts are not supported; use helm-chart.yaml")


def _true(value: Any) -> bool:
    return str(value).lower() == "true"
