"""kluctl's variable sources (``vars:`` of a project or a deployment item), in order.

Each source is first rendered as a template with the variables loaded so far (so ``file:`` names
may use ``args``), then its ``when`` decides; a ``file`` is looked up in the search directories
(the item's project first, then its parents), rendered as a template itself and read as YAML;
``values`` are inline. The result is deep-merged over the variables (mappings merge, anything else
is replaced), or under them with ``noOverride``; ``targetPath`` nests it first, ``multidoc`` reads
every document into a list. Sources that reach outside the repository (git, cluster objects, cloud
secret stores, HTTP, the process environment) are refused: a sync must not depend on them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from handlers.sync.kluctl import jinja
from handlers.sync.manifestio import RenderError, deep_merge, parse_documents, parse_mapping, rel

SOURCE_KEYS = {"file", "values", "ignoreMissing", "noOverride", "when", "sensitive", "targetPath", "multidoc"}
UNSUPPORTED = {"git", "gitFiles", "clusterConfigMap", "clusterSecret", "clusterObject", "systemEnvVars",
               "http", "awsSecretsManager", "gcpSecretManager", "vault", "azureKeyVault"}


def load_vars(variables: dict[str, Any], sources: Any, *, root: Path, search_dirs: list[Path],
              origin: Callable[[int], str]) -> dict[str, Any]:
    """``variables`` with every source of ``sources`` loaded over it; errors name ``origin(i)``."""
    if sources is None:
        return variables
    if not isinstance(sources, list):
        raise RenderError(f"{origin(0).rpartition('[')[0]}: vars must be a list of variable sources")
    env = jinja.environment(root, search_dirs)
    for index, source in enumerate(sources):
        variables = _load_one(env, variables, source, root=root, origin=origin(index))
    return variables


def _load_one(env: jinja.KluctlEnvironment, variables: dict[str, Any], source: Any, *, root: Path,
              origin: str) -> dict[str, Any]:
    if not isinstance(source, dict):
        raise RenderError(f"{origin}: a variable source must be a mapping")
    kinds = set(source) & UNSUPPORTED
    if kinds:
        raise RenderError(f"{origin}: vars source {sorted(kinds)[0]!r} is not supported by Shipline's kluctl "
                          "mode (only file and values: a sync reads nothing outside the repository)")
    unknown = set(source) - SOURCE_KEYS
    if unknown:
        raise RenderError(f"{origin}: unknown keys {sorted(unknown)} in a vars source")
    source = jinja.render_strings(env, source, variables, origin=origin)
    if not jinja.condition(env, str(source.get("when") or ""), variables, origin=f"{origin}.when"):
        return variables
    if ("file" in source) == ("values" in source):
        raise RenderError(f"{origin}: a vars source needs exactly one of file or values")
    multidoc, target_path = bool(source.get("multidoc")), str(source.get("targetPath") or "")
    if multidoc and not target_path:
        raise RenderError(f"{origin}: multidoc needs targetPath")
    if "values" in source:
        value: Any = source["values"] if source["values"] is not None else {}
    else:
        value = _file(env, variables, str(source["file"]), root=root, origin=origin, multidoc=multidoc,
                      ignore_missing=bool(source.get("ignoreMissing")))
        if value is None:
            return variables
    new = _nest(value, target_path, origin) if target_path else value
    if not isinstance(new, dict):
        raise RenderError(f"{origin}: the variables must be a mapping (or set targetPath)")
    return deep_merge(new, variables) if source.get("noOverride") else deep_merge(variables, new)


def _file(env: jinja.KluctlEnvironment, variables: dict[str, Any], name: str, *, root: Path, origin: str,
          multidoc: bool, ignore_missing: bool) -> Any:
    loader: jinja.ProjectLoader = env.loader  # type: ignore[assignment]
    path = loader.find(name) if not Path(name).is_absolute() else None
    if path is None:
        if ignore_missing:
            return None
        looked = ", ".join(rel(d, root) for d in loader.search_dirs)
        raise RenderError(f"{origin}: vars file {name!r} not found (looked in: {looked})")
    shown = rel(path, root)
    text = jinja.render_file(env, path, variables)
    if multidoc:
        return parse_documents(text, origin=f"{shown} (rendered)")
    return parse_mapping(text, origin=f"{shown} (rendered)")


def _nest(value: Any, target_path: str, origin: str) -> dict[str, Any]:
    parts = target_path.removeprefix("$").removeprefix(".").split(".")
    if not all(parts) or any(c in target_path for c in "[]*"):
        raise RenderError(f"{origin}: targetPath {target_path!r} must be a simple dotted path")
    for part in reversed(parts):
        value = {part: value}
    return value
