"""The deployment tree: ``deployment.yaml`` and its includes, flattened into deployment items in
kluctl's order (``pkg/deployment/deployment_project.go``, ``deployment_collection.go``).

A project is rendered with the variables it inherits (its parent's, plus its include item's
``vars``), then loads its own ``vars``. ``commonLabels``/``commonAnnotations`` merge from the root
down (the nearer project wins), ``overrideNamespace`` is the nearest one set, tags accumulate
(an item without tags is tagged with the last element of its path). An include with
``barrier: true`` puts a barrier after everything it includes. A library project
(``.kluctl-library.yaml``) sees only its ``args`` (and the variables, with ``passVars``).
Includes that come back to a project already on the way are a cycle, reported with the path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from handlers.sync.kluctl import jinja
from handlers.sync.kluctl.config import DeploymentConfig, find_config, load_config
from handlers.sync.kluctl.project import Target, resolve_args
from handlers.sync.kluctl.vars import load_vars
from handlers.sync.manifestio import RenderError, inside, parse_mapping, read_text, rel

LIBRARY_FILES = (".kluctl-library.yaml", ".kluctl-library.yml")


@dataclass
class Project:
    directory: Path
    config: DeploymentConfig
    variables: dict[str, Any]
    parent: Project | None = None
    include_tags: list[str] = field(default_factory=list)
    enabled: bool = True

    def chain(self) -> list[Project]:
        """This project, then each parent up to the root."""
        return [self] + (self.parent.chain() if self.parent else [])

    def search_dirs(self) -> list[Path]:
        return [p.directory for p in self.chain()]

    def common(self, key: str) -> dict[str, str]:
        merged: dict[str, str] = {}
        for project in reversed(self.chain()):
            merged.update(project.config.data.get(key) or {})
        return merged

    def override_namespace(self) -> str | None:
        return next((p.config.data["overrideNamespace"] for p in self.chain()
                     if p.config.data.get("overrideNamespace")), None)

    def tags(self) -> list[str]:
        """kluctl's order: each project's own tags, then the tags of the include item that brought
        it in paired with its parent's own tags, and so on up to the root."""
        tags: list[str] = []
        include: list[str] = []
        for project in self.chain():
            for tag in [*include, *(project.config.data.get("tags") or [])]:
                if tag not in tags:
                    tags.append(tag)
            include = project.include_tags
        return tags


@dataclass(frozen=True)
class Item:
    """A deployment item: a directory to render (``directory``), or a bare barrier."""

    project: Project
    config: dict[str, Any]
    origin: str
    variables: dict[str, Any]
    directory: Path | None = None
    render_dir: str = ""
    """Where it renders, relative to the render root: its path, ``-N`` suffixed on reuse."""
    tags: tuple[str, ...] = ()

    @property
    def barrier(self) -> bool:
        return bool(self.config.get("barrier"))


def walk(root: Path, project_dir: Path, target: Target) -> list[Item]:
    """Every deployment item of the target, in order (``when`` applied)."""
    variables = {"target": target.data, "args": target.args}
    project = _load(root, project_dir, None, variables, include=None, stack=())
    return _collect(root, project, {})


def _load(root: Path, directory: Path, parent: Project | None, variables: dict[str, Any], *,
          include: dict[str, Any] | None, stack: tuple[Path, ...]) -> Project:
    if directory in stack:
        cycle = " -> ".join(rel(d, root) or "." for d in (*stack, directory))
        raise RenderError(f"include cycle: {cycle}")
    path = find_config(directory)
    search = [directory] + (parent.search_dirs() if parent else [])
    if path is None:
        if parent is None:  # kluctl: a root without deployment.yaml is one item, "."
            config = DeploymentConfig("deployment.yaml", {"deployments": [{"path": "."}]}, [0])
            return Project(directory, config, variables)
        raise RenderError(f"{rel(directory, root) or '.'}: an include needs a deployment.yaml there")
    config = load_config(inside(root, path, rel(path, root)), root, search, variables)
    project = Project(directory, config, variables, parent, list((include or {}).get("tags") or []))
    if parent is None and config.data.get("when"):
        raise RenderError(f"{config.shown}: the root deployment project can not contain 'when'")
    project.variables = load_vars(variables, config.data.get("vars"), root=root, search_dirs=search,
                                  origin=config.vars_origin)
    env = jinja.environment(root, search)
    project.enabled = jinja.condition(env, str(config.data.get("when") or ""), project.variables,
                                      origin=f"{config.shown}: when")
    _default_tags(config)
    if project.enabled:
        _check_dirs(root, project, env)
    return project


def _default_tags(config: DeploymentConfig) -> None:
    for item in config.items:
        name = item.get("path") or item.get("include")
        if not item.get("tags") and name:
            tag = os.path.basename(os.path.normpath(name))
            if tag not in ("", ".", ".."):
                item["tags"] = [tag]


def _check_dirs(root: Path, project: Project, env: jinja.KluctlEnvironment) -> None:
    for index, item in enumerate(project.config.items):
        name = item.get("path") or item.get("include")
        if name is None or not _when(env, project, item, index):
            continue
        origin = project.config.item_origin(index)
        directory = _inside(root, project.directory / name, f"{origin} ({name})")
        if not directory.is_dir():
            raise RenderError(f"{origin}: {name} is not a directory of the project")


def _collect(root: Path, project: Project, indexes: dict[Path, int]) -> list[Item]:
    if not project.enabled:
        return []
    env = jinja.environment(root, project.search_dirs())
    items: list[Item] = []
    for index, config in enumerate(project.config.items):
        if not _when(env, project, config, index):
            continue
        origin = project.config.item_origin(index)
        if "include" in config:
            child = _include(root, project, config, origin)
            items += _collect(root, child, indexes)
            if config.get("barrier"):
                items.append(Item(project, {"barrier": True}, origin, project.variables))
            continue
        variables = load_vars(project.variables, config.get("vars"), root=root,
                              search_dirs=project.search_dirs(), origin=lambda i, o=origin: f"{o}.vars[{i}]")
        tags = tuple(dict.fromkeys([*project.tags(), *(config.get("tags") or [])]))
        if "path" not in config:
            items.append(Item(project, config, origin, variables, tags=tags))
            continue
        directory = (project.directory / config["path"]).resolve()
        reuse = indexes.get(directory, 0)
        indexes[directory] = reuse + 1
        render_dir = rel(directory, root) + (f"-{reuse}" if reuse else "")
        items.append(Item(project, config, origin, variables, directory, render_dir, tags))
    return items


def _include(root: Path, project: Project, config: dict[str, Any], origin: str) -> Project:
    directory = _inside(root, project.directory / config["include"], f"{origin} ({config['include']})")
    variables = project.variables
    library = next((directory / n for n in LIBRARY_FILES if (directory / n).is_file()), None)
    if library is not None:
        variables = _library_variables(root, library, project.variables, config, origin)
    variables = load_vars(variables, config.get("vars"), root=root, search_dirs=project.search_dirs(),
                          origin=lambda i: f"{origin}.vars[{i}]")
    stack = tuple(p.directory for p in reversed(project.chain()))
    return _load(root, directory, project, variables, include=config, stack=stack)


def _library_variables(root: Path, library: Path, variables: dict[str, Any], config: dict[str, Any],
                       origin: str) -> dict[str, Any]:
    shown = rel(library, root)
    declared = parse_mapping(read_text(library, shown), origin=shown).get("args") or []
    passed = {k: v for k, v in variables.items() if k != "args"} if config.get("passVars") else {}
    args = resolve_args(declared, config.get("args") or {}, where=f"{origin}: library {shown}")
    return {**passed, "args": args}


def _when(env: jinja.KluctlEnvironment, project: Project, item: dict[str, Any], index: int) -> bool:
    origin = f"{project.config.item_origin(index)}.when"
    return jinja.condition(env, str(item.get("when") or ""), project.variables, origin=origin)


def _inside(root: Path, path: Path, shown: str) -> Path:
    try:
        return inside(root, path, shown)
    except RenderError:
        raise RenderError(f"{shown}: path/include is not part of the repository") from None
