"""``.kluctl.yaml``: the targets, their args and the discriminator.

As kluctl does (``pkg/kluctl_project``): the chosen target's ``args``, then Shipline's ``render.args``
over them (kluctl's ``-a``), then the project's ``args:`` defaults under them; an arg without a
value or a default is an error. Each string of the target is a template rendered with only
``target`` and ``args``, retried up to 10 times so a target may refer to itself; the discriminator
(the target's own, else the project's default) is rendered the same way.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handlers.sync.kluctl import jinja
from handlers.sync.manifestio import RenderError, deep_merge, parse_mapping, read_text

PROJECT_FILES = (".kluctl.yaml", ".kluctl.yml")
PROJECT_KEYS = {"targets", "args", "discriminator", "aws"}
TARGET_KEYS = {"name", "context", "args", "images", "discriminator", "aws"}
RENDER_ATTEMPTS = 10


@dataclass(frozen=True)
class Target:
    name: str | None
    args: dict[str, Any]
    """Every arg: the target's, the overrides and the defaults (templates see it as ``args``)."""
    discriminator: str
    data: dict[str, Any]
    """The rendered target definition (templates see it as ``target``)."""


def load_target(project_dir: Path, root: Path, name: str | None, overrides: dict[str, Any], *,
                context: str | None = None) -> Target:
    config, shown = _project_config(project_dir)
    targets = _targets(config, shown)
    if name is None and targets:
        raise RenderError(f"{shown}: defines targets {sorted(targets)}; choose one with render.target")
    if name is not None and name not in targets:
        known = sorted(targets) or "none"
        raise RenderError(f"{shown}: no target {name!r} (targets: {known})")
    data = copy.deepcopy(targets.get(name, {})) if name is not None else {}
    if not data.get("discriminator"):
        data["discriminator"] = config.get("discriminator") or ""
    if context:
        data["context"] = context
    env = jinja.environment(root, [project_dir])
    for _ in range(RENDER_ATTEMPTS):
        args = _args(config, data, overrides, shown)
        rendered = jinja.render_strings(env, data, {"target": data, "args": args},
                                        origin=f"{shown}: target {name}")
        if rendered == data:
            break
        data = rendered
    args = _args(config, data, overrides, shown)
    discriminator = str(data.get("discriminator") or "")
    if not discriminator:
        data.pop("discriminator", None)
    return Target(name=name, args=args, discriminator=discriminator, data=data)


def _project_config(project_dir: Path) -> tuple[dict[str, Any], str]:
    for filename in PROJECT_FILES:
        path = project_dir / filename
        if path.is_file():
            config = parse_mapping(read_text(path, filename), origin=filename)
            unknown = set(config) - PROJECT_KEYS
            if unknown:
                raise RenderError(f"{filename}: unknown keys {sorted(unknown)} (known: {sorted(PROJECT_KEYS)})")
            return config, filename
    return {}, PROJECT_FILES[0]


def _targets(config: dict[str, Any], shown: str) -> dict[str, dict[str, Any]]:
    targets: dict[str, dict[str, Any]] = {}
    for index, target in enumerate(config.get("targets") or []):
        if not isinstance(target, dict) or not target.get("name"):
            raise RenderError(f"{shown}: targets[{index}] needs a name")
        unknown = set(target) - TARGET_KEYS
        if unknown:
            raise RenderError(f"{shown}: target {target['name']}: unknown keys {sorted(unknown)}")
        targets.setdefault(str(target["name"]), target)  # kluctl keeps the first of duplicates
    return targets


def _args(config: dict[str, Any], target: dict[str, Any], overrides: dict[str, Any], shown: str) -> dict[str, Any]:
    return resolve_args(config.get("args") or [], deep_merge(target.get("args") or {}, overrides),
                        where=shown, hint=" (by the target or render.args)")


def resolve_args(declared: Any, given: dict[str, Any], *, where: str, hint: str = "") -> dict[str, Any]:
    """``given`` over the defaults of the ``declared`` args (kluctl's ``LoadDefaultArgs``); an arg
    declared without a default must be given."""
    if not isinstance(declared, list) or not all(isinstance(a, dict) and a.get("name") for a in declared):
        raise RenderError(f"{where}: args must be a list of entries with a name")
    defaults: dict[str, Any] = {}
    for arg in declared:
        if "default" in arg:
            defaults = deep_merge(defaults, {arg["name"]: arg["default"]})
    args = deep_merge(defaults, given)
    for arg in declared:
        if "default" not in arg and jinja.lookup(args, str(arg["name"]), _MISSING) is _MISSING:
            raise RenderError(f"{where}: required arg {arg['name']!r} is not set{hint}")
    return args


_MISSING = object()
