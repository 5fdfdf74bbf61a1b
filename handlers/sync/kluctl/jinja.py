"""kluctl's Jinja2 dialect, in a sandbox.

kluctl renders every file with Jinja2 (``StrictUndefined``, ``loopcontrols``, no trim/lstrip) and
the variables as globals. Templates are found the way its loader finds them: a name is searched in
each of the search directories in turn (the deployment item's directory, then its project's, then
every parent project's up to the root); ``./x`` and ``../x`` are relative to the including
template. Unlike kluctl we use Jinja's ``SandboxedEnvironment`` (templates come from Git pushes),
never leave the repository, and leave out what cannot be reproduced offline (``time``,
``load_latest_git_commit``, ``slugify``, ``images.get_image``).

Errors become ``RenderError`` naming the template file (repo-relative) and line.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import re
import textwrap
import threading
import traceback
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2
import jinja2.bccache
import yaml
from jinja2.loaders import split_template_path
from jinja2.sandbox import SandboxedEnvironment

from handlers.errors import ConfigError
from handlers.sync.manifestio import RenderError, inside, read_text, rel
from handlers.yamlsafe import load_yaml_text

TEMPLATE_MARKERS = ("{{", "{%", "{#")
MAX_RENDERED_CHARS = 16 * 1024 * 1024


class ProjectLoader(jinja2.BaseLoader):
    """Names are looked up in ``search_dirs`` in order; absolute names (from ``./`` joins) must lie
    under one of them. Nothing outside ``root`` is ever read."""

    def __init__(self, root: Path, search_dirs: list[Path]) -> None:
        self.root, self.search_dirs = root, search_dirs

    def find(self, name: str) -> Path | None:
        if os.path.isabs(name):
            path = Path(os.path.normpath(name))
            return path if path.is_file() and any(d in path.parents for d in self.search_dirs) else None
        pieces = split_template_path(name)  # refuses ".." pieces
        for directory in self.search_dirs:
            candidate = directory.joinpath(*pieces)
            if candidate.is_file():
                return candidate
        return None

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        path = self.find(template)
        if path is None:
            raise jinja2.TemplateNotFound(template)
        shown = rel(path, self.root)
        return read_text(inside(self.root, path, shown), shown), str(path), lambda: True


class KluctlEnvironment(SandboxedEnvironment):
    def join_path(self, template: str, parent: str) -> str:
        if template.startswith(("./", "../")):
            return os.path.normpath(os.path.join(os.path.dirname(parent), template))
        return template


class _CompiledTemplates(jinja2.BytecodeCache):
    """Compiled templates shared by every environment of the process, keyed by file and source
    checksum (Jinja's own bucket key): a changed file is compiled again, an unchanged one is not,
    so each sync does not recompile the same project."""

    def __init__(self, size: int = 4096) -> None:
        self.size, self.code = size, OrderedDict[str, bytes]()
        self.lock = threading.Lock()

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with self.lock:
            code = self.code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with self.lock:
            self.code[bucket.key] = bucket.bytecode_to_string()
            while len(self.code) > self.size:
                self.code.popitem(last=False)


_COMPILED = _CompiledTemplates()


def environment(root: Path, search_dirs: list[Path]) -> KluctlEnvironment:
    env = KluctlEnvironment(loader=ProjectLoader(root, search_dirs), undefined=jinja2.StrictUndefined,
                            extensions=["jinja2.ext.loopcontrols"], autoescape=False,  # noqa: S701 (YAML)
                            bytecode_cache=_COMPILED)
    filters = {"b64encode": b64encode, "b64decode": b64decode, "to_yaml": to_yaml, "to_json": json.dumps,
               "from_yaml": from_yaml, "sha256": sha256}
    env.filters.update({name: _strict(f) for name, f in filters.items()}, render=render_string)
    env.globals.update({
        "load_template": load_template, "load_base64": load_base64, "load_sha256": load_sha256,
        "get_var": get_var, "merge_dict": merge_dict, "update_dict": update_dict, "raise": raise_error,
        "debug_print": lambda msg: "", "render": render_string,
        "images": {"get_image": _unsupported("images.get_image(): put the image in a vars file instead")},
    })
    return env


def render_file(env: KluctlEnvironment, path: Path, variables: dict[str, Any]) -> str:
    """``path`` (absolute) rendered with ``variables``; errors name the file and line. The output
    is capped at ``MAX_RENDERED_CHARS``: a loop in a pushed template must not fill the memory."""
    root: Path = env.loader.root  # type: ignore[union-attr]
    shown = rel(path, root)
    try:
        parts, size = [], 0
        # a copy: update_dict() in one template must not reach the next one (kluctl renders each
        # file with its own copy of the variables)
        for part in env.get_template(str(path)).generate(copy.deepcopy(variables)):
            size += len(part)
            if size > MAX_RENDERED_CHARS:
                raise RenderError(f"{shown}: renders to more than {MAX_RENDERED_CHARS} characters; refused")
            parts.append(part)
        return "".join(parts)
    except Exception as exc:  # noqa: BLE001 (whatever a template raises is the template's error)
        raise template_error(exc, root, shown) from None


def render_text(env: KluctlEnvironment, text: str, variables: dict[str, Any], *, origin: str) -> str:
    """A template string (a field of ``deployment.yaml``, a ``when``) rendered; errors name ``origin``."""
    if not any(m in text for m in TEMPLATE_MARKERS):
        return text
    try:
        return env.from_string(text).render(copy.deepcopy(variables))
    except Exception as exc:  # noqa: BLE001
        raise template_error(exc, env.loader.root, origin) from None  # type: ignore[union-attr]


def render_strings(env: KluctlEnvironment, data: Any, variables: dict[str, Any], *, origin: str) -> Any:
    """Every string inside ``data`` rendered as a template (kluctl's ``RenderStruct``)."""
    if isinstance(data, str):
        return render_text(env, data, variables, origin=origin)
    if isinstance(data, dict):
        return {k: render_strings(env, v, variables, origin=origin) for k, v in data.items()}
    if isinstance(data, list):
        return [render_strings(env, v, variables, origin=origin) for v in data]
    return data


def condition(env: KluctlEnvironment, expression: str, variables: dict[str, Any], *, origin: str) -> bool:
    """kluctl's ``when``: an expression in ``{% if %}``; empty is true."""
    if not expression:
        return True
    result = render_text(env, f"{{% if {expression} %}} True {{% else %}} False {{% endif %}}", variables,
                         origin=origin).strip()
    return result == "True"


def template_error(exc: BaseException, root: Path, origin: str) -> RenderError:
    if isinstance(exc, RenderError):
        return exc
    if isinstance(exc, jinja2.TemplateSyntaxError):
        where = _shown(exc.filename, root, origin)
        return RenderError(f"{where}, line {exc.lineno}: template syntax error: {exc.message}")
    if isinstance(exc, jinja2.TemplateNotFound):
        return RenderError(f"{origin}: template {exc.name} not found")
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.endswith(".py")]
    if not frames:
        return RenderError(f"{origin}: {type(exc).__name__}: {exc}")
    frame = frames[-1]
    if frame.filename.startswith("<"):  # a template string (a when, a field): its own line means nothing
        return RenderError(f"{origin}: {type(exc).__name__}: {exc}")
    return RenderError(f"{_shown(frame.filename, root, origin)}, line {frame.lineno}: {type(exc).__name__}: {exc}")


def _shown(filename: str | None, root: Path, origin: str) -> str:
    if not filename or filename.startswith("<"):
        return origin
    return rel(Path(filename), root)


# -- filters and functions (kluctl's go_jinja2/ext/kluctl_ext.py) ----------------------------------

def b64encode(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def b64decode(value: str) -> str:
    return base64.b64decode(value.encode()).decode()


class _YamlDumper(yaml.SafeDumper):
    """kluctl's ``MultilineStrDumper``: block style for multi-line strings, quoted digit strings."""


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    if len(data.splitlines()) > 1:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    if data.isnumeric():
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="'")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_YamlDumper.add_representer(str, _represent_str)


def to_yaml(value: Any) -> str:
    return yaml.dump(value, Dumper=_YamlDumper, sort_keys=False)


def from_yaml(text: str) -> Any:
    try:
        return load_yaml_text(text, origin="from_yaml")
    except ConfigError as exc:
        raise jinja2.TemplateError(str(exc)) from None


def sha256(value: str | bytes, digest_len: int | None = None) -> str:
    data = value if isinstance(value, bytes) else value.encode("utf-8")
    digest = hashlib.sha256(data).hexdigest()
    return digest[:digest_len] if digest_len is not None else digest


@jinja2.pass_context
def render_string(ctx: jinja2.runtime.Context, text: str) -> str:
    return ctx.environment.from_string(text).render(ctx.get_all())


@jinja2.pass_context
def load_template(ctx: jinja2.runtime.Context, path: str, **kwargs: Any) -> str:
    template = ctx.environment.get_template(path, parent=ctx.name)
    return template.render(merge_dict(ctx.get_all(), kwargs))


@jinja2.pass_context
def load_sha256(ctx: jinja2.runtime.Context, path: str, digest_len: int | None = None) -> str:
    if "__calc_sha256__" in ctx:
        return "__self_sha256__"
    rendered = load_template(ctx, path, __calc_sha256__=True)
    return sha256(rendered, digest_len)


@jinja2.pass_context
def load_base64(ctx: jinja2.runtime.Context, path: str, width: int | None = None) -> str:
    env = ctx.environment
    loader: ProjectLoader = env.loader  # type: ignore[assignment]
    found = loader.find(env.join_path(path, ctx.name) if ctx.name else path) or loader.find(path)
    if found is None:
        raise jinja2.TemplateNotFound(path)
    shown = rel(found, loader.root)
    checked = inside(loader.root, found, shown)
    if checked.stat().st_size > 4 * 1024 * 1024:
        raise RenderError(f"{shown}: larger than 4 MiB; refused by load_base64")
    encoded = base64.b64encode(checked.read_bytes()).decode()
    return textwrap.fill(encoded, width=width) if width else encoded


@jinja2.pass_context
def get_var(ctx: jinja2.runtime.Context, path: str | list[str], default: Any = None) -> Any:
    missing = object()
    for candidate in path if isinstance(path, list) else [path]:
        value = lookup(ctx.get_all(), candidate, missing)
        if value is not missing:
            return value
    return default


_PATH_PART = re.compile(r"""\.?([A-Za-z_][\w-]*)|\[(\d+)\]|\[["']([^"']*)["']\]""")


def lookup(data: Any, path: str, default: Any) -> Any:
    """A simple JSON path (``a.b[0]['c']``, optional ``$.`` prefix) into ``data``."""
    path = path.removeprefix("$").removeprefix(".")
    position, value = 0, data
    while position < len(path):
        match = _PATH_PART.match(path, position)
        if match is None:
            raise jinja2.TemplateError(f"get_var: unsupported path {path!r} (only a.b[0]['c'])")
        position = match.end()
        key: Any = match.group(1) or match.group(3)
        if match.group(2) is not None:
            key = int(match.group(2))
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            return default
    return value


def merge_dict(a: dict[str, Any] | None, b: dict[str, Any] | None, clone: bool = True) -> dict[str, Any]:
    a = copy.deepcopy(a or {}) if clone else (a if a is not None else {})
    for key, value in (b or {}).items():
        if isinstance(a.get(key), dict) and isinstance(value, dict):
            merge_dict(a[key], value, clone=False)
        else:
            a[key] = value
    return a


def update_dict(a: dict[str, Any], b: dict[str, Any]) -> str:
    merge_dict(a, b, clone=False)
    return ""


def raise_error(message: str) -> None:
    raise jinja2.TemplateError(message)


def _strict(function: Callable[..., Any]) -> Callable[..., Any]:
    """An undefined value given to a filter is the template's error (as for any other use)."""
    def checked(value: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(value, jinja2.Undefined):
            value._fail_with_undefined_error()
        return function(value, *args, **kwargs)
    return checked


def _unsupported(what: str) -> Callable[..., Any]:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise jinja2.TemplateError(f"not supported by Shipline's kluctl mode: {what}")
    return fail
