"""Render one deployment item's directory into the render tree (kluctl's ``DeploymentItem.render``,
``renderHelmCharts``): every file is a Jinja2 template with the item's variables, except what a
``.templateignore`` names and Helm chart directories (a ``Chart.yaml`` inside), which are copied
as they are. Every rendered YAML file is read once through ``yamlsafe`` before kustomize or helm
sees it, so a YAML bomb or a syntax error is reported with its file, not by a subprocess.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handlers.sync.kluctl import helm, jinja, kustomize, templateignore
from handlers.sync.kluctl.tree import Item
from handlers.sync.manifestio import RenderError, inside, parse_documents, parse_mapping, read_text, rel


@dataclass(frozen=True)
class RenderedItem:
    item: Item
    directory: Path
    barrier: bool
    wait_readiness: bool


def render_item(item: Item, root: Path, render_root: Path) -> RenderedItem:
    """Render ``item`` (a directory item) under ``render_root``; its kustomization prepared."""
    assert item.directory is not None
    source, target = item.directory, render_root / item.render_dir
    shown = rel(source, root) or "."
    env = jinja.environment(root, [source, *item.project.search_dirs()])
    charts = [d for d in _dirs(source) if (d / "Chart.yaml").is_file()]
    ignore = templateignore.load(root, source)
    for path in _files(source):
        relpath = rel(path, root)
        out = target / path.relative_to(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        checked = inside(root, path, relpath)
        copied = ignore.ignored(relpath) or any(c in path.parents for c in charts)
        if copied:
            out.write_bytes(checked.read_bytes())
            continue
        try:
            read_text(checked, relpath)  # size and encoding checks, with the file named
        except RenderError as exc:
            raise RenderError(f"{exc} (a file that is not a template belongs in a .templateignore)") from None
        out.write_text(jinja.render_file(env, checked, item.variables))
        if out.suffix in kustomize.RESOURCE_SUFFIXES:
            parse_documents(out.read_text(), origin=f"{relpath} (rendered)")
    helm_outputs = _render_charts(target, source, root)
    if item.config.get("onlyRender"):
        return RenderedItem(item, target, False, False)
    barrier, wait = kustomize.prepare(target, recursive=bool(item.config.get("recursive")),
                                      override_namespace=item.project.override_namespace(),
                                      helm_outputs=helm_outputs, shown=shown)
    return RenderedItem(item, target, barrier, wait)


def _render_charts(target: Path, source: Path, root: Path) -> dict[str, str]:
    """Each helm-chart.yaml of the rendered item → its output file, written next to it."""
    outputs: dict[str, str] = {}
    for config in sorted(target.rglob("helm-chart.y*ml")):
        if config.name not in helm.CHART_FILES:
            continue
        subdir = config.parent.relative_to(target)
        chart = helm.load_chart(config, source / subdir, root)
        values = _values(config.parent, source / subdir, root)
        text = helm.template(chart, values)
        objects = [d for d in parse_documents(text, origin=f"helm template of {chart.config_file}") if d]
        for obj in objects:
            if chart.namespace and isinstance(obj, dict):
                meta = obj.setdefault("metadata", {})
                meta["annotations"] = {**(meta.get("annotations") or {}), helm.INSTALL_NAMESPACE: chart.namespace}
        _check_listed(config.parent, chart, rel(source / subdir, root) or ".")
        # JSON documents are YAML to kustomize, and far quicker to write than a YAML dump
        (config.parent / chart.output).write_text("".join(f"---\n{json.dumps(o, default=str)}\n" for o in objects))
        outputs[str(subdir / config.name)] = str(subdir / chart.output)
    return outputs


def _values(directory: Path, source_dir: Path, root: Path) -> dict[str, Any] | None:
    for name in helm.VALUES_FILES:
        path = directory / name
        if path.is_file():
            return parse_mapping(path.read_text(), origin=f"{rel(source_dir / name, root)} (rendered)")
    return None


def _check_listed(directory: Path, chart: helm.Chart, shown: str) -> None:
    existing = kustomize.kustomization_file(directory)
    if existing is None:
        return
    resources = parse_mapping(existing.read_text(), origin=f"{shown}/{existing.name}").get("resources") or []
    if chart.output not in resources:
        raise RenderError(f"{shown}/{existing.name} does not include the rendered helm chart: {chart.output}")


def _dirs(source: Path) -> list[Path]:
    return [Path(d) for d, _, _ in os.walk(source) if ".git" not in Path(d).relative_to(source).parts]


def _files(source: Path) -> list[Path]:
    files: list[Path] = []
    for directory, dirnames, filenames in os.walk(source):
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        files += [Path(directory) / f for f in sorted(filenames)]
    return files
