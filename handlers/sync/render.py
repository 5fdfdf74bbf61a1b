"""Render an environment's manifests from a checkout into plain objects.

Modes (``env.render.mode``):

- ``plain``: every ``.yaml``/``.yml`` under ``<checkout>/<env.git.path>`` (sorted, recursive,
  multi-document, empty documents skipped, ``kind: List`` expanded);
- ``kustomize``: ``kubectl kustomize <dir>`` (argument list, ``KUSTOMIZE_TIMEOUT``; no plugins,
  no Helm, root-only loading: kubectl's defaults);
- ``jinja2``: kluctl-style: each ``.yaml``/``.yml``/``.j2`` file under the path is a template
  rendered in a ``SandboxedEnvironment`` with ``StrictUndefined``; variables come from the
  ``render.vars`` files (relative to the repo root, deep-merged in order) as top-level names,
  plus ``shipline.env`` and ``shipline.namespace``.

All YAML goes through ``handlers.yamlsafe`` (no object tags, no alias bombs). Files must stay
inside the checkout (symlinks out are refused) and under ``MAX_FILE_BYTES``. Every failure is a
``RenderError`` naming the file and, when known, the line.
"""

from __future__ import annotations

import shutil
import subprocess
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from handlers.errors import ConfigError, PermanentError, TransientError
from handlers.settings import EnvironmentConfig
from handlers.sync.objects import Obj
from handlers.yamlsafe import load_yaml_all, load_yaml_text

KUSTOMIZE_TIMEOUT = 120
MAX_FILE_BYTES = 4 * 1024 * 1024
MANIFEST_SUFFIXES = (".yaml", ".yml")
TEMPLATE_SUFFIXES = (".yaml", ".yml", ".j2")


class RenderError(PermanentError):
    """The manifests cannot be rendered at this revision; the message names file and line."""


def render(env: EnvironmentConfig, checkout: Path) -> list[Obj]:
    """The environment's objects at this checkout, in file order."""
    root = checkout.resolve()
    source = _inside(root, root / env.git.path, env.git.path)
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
        objects += parse_objects(_read(path), origin=_rel(path, root))
    return objects


def render_kustomize(source: Path) -> list[Obj]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise RenderError("kustomize mode needs kubectl (with built-in kustomize) on PATH")
    try:
        proc = subprocess.run([kubectl, "kustomize", str(source)], capture_output=True, text=True,
                              timeout=KUSTOMIZE_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise TransientError(f"kubectl kustomize {source.name} took over {KUSTOMIZE_TIMEOUT}s") from None
    if proc.returncode != 0:
        raise RenderError(f"kubectl kustomize {source.name} failed: {proc.stderr.strip()[-2000:]}")
    return parse_objects(proc.stdout, origin=f"kustomize build of {source.name}")


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
        objects += parse_objects(text, origin=f"{_rel(path, root)} (rendered)")
    return objects


def parse_objects(text: str, *, origin: str) -> list[Obj]:
    """Kubernetes objects from a multi-document YAML text; ``List`` kinds are expanded."""
    try:
        docs = load_yaml_all(text, origin=origin)
    except ConfigError as exc:
        raise RenderError(str(exc)) from None
    objects: list[Obj] = []
    for index, doc in enumerate(docs, 1):
        if doc is None or _is_kustomization(doc):
            continue
        items = doc.get("items") if isinstance(doc, dict) and doc.get("kind") == "List" else [doc]
        objects += [_checked(item, origin, index) for item in items or []]
    return objects


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


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


def _render_template(jinja: SandboxedEnvironment, path: Path, root: Path, variables: dict[str, Any]) -> str:
    rel = _rel(path, root)
    try:
        return jinja.from_string(_read(path)).render(variables)
    except jinja2.TemplateSyntaxError as exc:
        raise RenderError(f"{rel}, line {exc.lineno}: template syntax error: {exc.message}") from None
    except Exception as exc:  # any error raised while evaluating the template is the template's
        raise RenderError(f"{rel}, line {_template_line(exc)}: {type(exc).__name__}: {exc}") from None


def _template_line(exc: BaseException) -> int | str:
    """Jinja rewrites tracebacks so template frames carry the template line."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == "<template>"]
    return frames[-1].lineno if frames and frames[-1].lineno else "?"


def _vars_file(root: Path, name: str) -> dict[str, Any]:
    path = _inside(root, root / name, name)
    if not path.is_file():
        raise RenderError(f"{name}: vars file does not exist in the repository")
    try:
        data = load_yaml_text(_read(path), origin=name)
    except ConfigError as exc:
        raise RenderError(str(exc)) from None
    if not isinstance(data, dict):
        raise RenderError(f"{name}: a vars file must be a mapping at the top level")
    return data


def _files(source: Path, root: Path, suffixes: tuple[str, ...]) -> Iterator[Path]:
    candidates = [source] if source.is_file() else sorted(source.rglob("*"))
    for path in candidates:
        if path.suffix in suffixes and path.is_file() and ".git" not in path.relative_to(root).parts:
            yield _inside(root, path, _rel(path, root))


def _inside(root: Path, path: Path, shown: str) -> Path:
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        raise RenderError(f"{shown}: resolves outside the repository (symlink?); refused")
    return resolved


def _read(path: Path) -> str:
    if path.stat().st_size > MAX_FILE_BYTES:
        raise RenderError(f"{path.name}: larger than {MAX_FILE_BYTES} bytes; refused")
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise RenderError(f"{path.name}: cannot read: {exc}") from None


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)
