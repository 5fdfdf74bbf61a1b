"""Render an environment's manifests from a checkout into plain objects.

Modes (``env.render.mode``):

- ``plain``: every ``.yaml``/``.yml`` under ``<checkout>/<env.git.path>`` (sorted, recursive,
  multi-document, empty documents skipped, ``kind: List`` expanded);
- ``kustomize``: ``kubectl kustomize <dir>`` (argument list, ``kustomizebuild.KUSTOMIZE_TIMEOUT``; no plugins,
  no Helm, root-only loading: kubectl's defaults);
- ``jinja2``: kluctl-style: each ``.yaml``/``.yml``/``.j2`` file under the path is a template
  rendered in a ``SandboxedEnvironment`` with ``StrictUndefined``; variables come from the
  ``render.vars`` files (relative to the repo root, deep-merged in order) as top-level names,
  plus ``shipline.env`` and ``shipline.namespace``;
- ``kluctl``: a kluctl project (``.kluctl.yaml``, ``deployment.yaml`` tree, Helm charts) rendered
  for ``render.target`` as kluctl renders it (``handlers.sync.kluctl``); its barriers split the
  objects into phases.

``render`` gives every object; ``render_plan`` the phases (one for every mode but kluctl), each with
the objects that must be ready before the next phase, and the kluctl target and discriminator.
All YAML goes through ``handlers.yamlsafe`` (no object tags, no alias bombs). Files must stay
inside the checkout (symlinks out are refused) and under ``MAX_FILE_BYTES``. Every failure is a
``RenderError`` naming the file and, when known, the line.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from handlers.errors import ConfigError
from handlers.settings import EnvironmentConfig
from handlers.sync.kluctl.render import Phase, render_project
from handlers.sync.kustomizebuild import kustomize_build
from handlers.sync.manifestio import MAX_FILE_BYTES, RenderError, deep_merge, inside, parse_objects, read_text, rel
from handlers.sync.objects import Obj
from handlers.yamlsafe import load_yaml_text

__all__ = ["MAX_FILE_BYTES", "Phase", "RenderError", "RenderPlan", "deep_merge", "describe", "parse_objects",
           "render", "render_phases", "render_plan"]
MANIFEST_SUFFIXES = (".yaml", ".yml")
TEMPLATE_SUFFIXES = (".yaml", ".yml", ".j2")


@dataclass(frozen=True)
class RenderPlan:
    phases: list[Phase]
    """Applied in order; ``Phase.wait`` must be ready (``handlers.sync.readiness``) before the next."""
    target: str | None = None
    """The kluctl target rendered (kluctl mode)."""
    discriminator: str = ""
    """The kluctl discriminator: every object carries it as ``kluctl.io/discriminator`` (kluctl mode)."""
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def objects(self) -> list[Obj]:
        return [o for phase in self.phases for o in phase.objects]


def render(env: EnvironmentConfig, checkout: Path) -> list[Obj]:
    """The environment's objects at this checkout, in file (kluctl: deployment) order."""
    return render_plan(env, checkout).objects


def render_phases(env: EnvironmentConfig, checkout: Path) -> list[list[Obj]]:
    """The objects in phases: one phase, or (kluctl) one per run of items between barriers."""
    return [phase.objects for phase in render_plan(env, checkout).phases]


def render_plan(env: EnvironmentConfig, checkout: Path) -> RenderPlan:
    if env.render.mode == "kluctl":
        result = render_project(env, checkout)
        return RenderPlan(result.phases, result.target.name, result.discriminator, result.target.args)
    return RenderPlan([Phase(_render_flat(env, checkout))])


def describe(env: EnvironmentConfig) -> str:
    """How the environment renders, for ``status``/``config check``: ``kluctl target=staging``."""
    if env.render.mode != "kluctl":
        return env.render.mode
    args = "".join(f" {k}={v}" for k, v in sorted(env.render.args.items()))
    return f"kluctl target={env.render.target or '-'}{args}"


def _render_flat(env: EnvironmentConfig, checkout: Path) -> list[Obj]:
    root = checkout.resolve()
    source = inside(root, root / env.git.path, env.git.path)
    if not source.exists():
        raise RenderError(f"{env.git.path}: path does not exist in the repository")
    if env.render.mode == "kustomize":
        return render_kustomize(source)
    if env.render.mode == "jinja2":
        return render_jinja2(source, root, env)
    return render_plain(source, root)


def render_plain(source: Path, root: Path) -> list[Obj]:
    objects: list[Obj] = []
    for path in _files(source, root, MANIFEST_SUFFIXES):
        objects += parse_objects(read_text(path), origin=rel(path, root))
    return objects


def render_kustomize(source: Path) -> list[Obj]:
    text = kustomize_build(source, f"kustomize build of {source.name}")
    return parse_objects(text, origin=f"kustomize build of {source.name}")


def render_jinja2(source: Path, root: Path, env: EnvironmentConfig) -> list[Obj]:
    variables = {"shipline": {"env": env.name, "namespace": env.namespace}}
    for name in env.render.vars:
        variables = deep_merge(variables, _vars_file(root, name))
    loader_root = source if source.is_dir() else source.parent
    jinja = SandboxedEnvironment(
        loader=jinja2.FileSystemLoader([str(loader_root), str(root)]), undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True, autoescape=False,  # noqa: S701 (YAML, not HTML)
    )
    objects: list[Obj] = []
    for path in _files(source, root, TEMPLATE_SUFFIXES):
        text = _render_template(jinja, path, root, variables)
        objects += parse_objects(text, origin=f"{rel(path, root)} (rendered)")
    return objects


def _render_template(jinja: SandboxedEnvironment, path: Path, root: Path, variables: dict[str, Any]) -> str:
    shown = rel(path, root)
    try:
        return jinja.from_string(read_text(path)).render(variables)
    except jinja2.TemplateSyntaxError as exc:
        raise RenderError(f"{shown}, line {exc.lineno}: template syntax error: {exc.message}") from None
    except Exception as exc:  # any error raised while evaluating the template is the template's
        raise RenderError(f"{shown}, line {_template_line(exc)}: {type(exc).__name__}: {exc}") from None


def _template_line(exc: BaseException) -> int | str:
    """Jinja rewrites tracebacks so template frames carry the template line."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == "<template>"]
    return frames[-1].lineno if frames and frames[-1].lineno else "?"


def _vars_file(root: Path, name: str) -> dict[str, Any]:
    path = inside(root, root / name, name)
    if not path.is_file():
        raise RenderError(f"{name}: vars file does not exist in the repository")
    try:
        data = load_yaml_text(read_text(path), origin=name)
    except ConfigError as exc:
        raise RenderError(str(exc)) from None
    if not isinstance(data, dict):
        raise RenderError(f"{name}: a vars file must be a mapping at the top level")
    return data


def _files(source: Path, root: Path, suffixes: tuple[str, ...]) -> Iterator[Path]:
    candidates = [source] if source.is_file() else sorted(source.rglob("*"))
    for path in candidates:
        if path.suffix in suffixes and path.is_file() and ".git" not in path.relative_to(root).parts:
            yield inside(root, path, rel(path, root))
