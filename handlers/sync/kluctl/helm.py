"""Helm charts of a kluctl project: ``helm-chart.yaml`` + ``helm-values.yaml`` → ``helm template``.

As kluctl does (``pkg/helm``): the chart must be pre-pulled (``kluctl helm-pull``) into the nearest
``.helm-charts`` directory above the deployment item, at
``.helm-charts/<scheme>[_<port>]_<host>/<repo path>/<chart>/<version>/`` (OCI:
``oci[_<port>]_<host>/<path>/<version>/``), or be a local chart (``path:``). Nothing is ever pulled at
sync time: a chart that is not there is an error naming chart and version. CRDs are included
unless ``skipCRDs``, hooks are kept, test hooks dropped (``--skip-tests``), the release namespace
defaults to ``default``. Values come from the rendered ``helm-values.yaml``, read through
``yamlsafe`` first (no alias bombs reach helm). helm runs with empty, private config/cache dirs.

The binary: ``SHIPLINE_HELM``, else the build of ``scripts/build-helm.sh`` in
``~/.cache/shipline/helm/``, else ``helm`` on ``PATH``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from handlers.errors import TransientError
from handlers.sync.manifestio import RenderError, inside, parse_mapping, read_text, rel

HELM_TIMEOUT = 120
CHART_FILES = ("helm-chart.yaml", "helm-chart.yml")
VALUES_FILES = ("helm-values.yaml", "helm-values.yml")
CHART_KEYS = {"repo", "path", "chartName", "chartVersion", "updateConstraints", "skipUpdate", "skipPrePull",
              "releaseName", "namespace", "output", "skipCRDs", "git"}
INSTALL_NAMESPACE = "kluctl.io/helm-install-namespace"
"""On every object of a chart with a namespace: objects without one go there (kluctl's annotation)."""


@dataclass(frozen=True)
class Chart:
    config_file: str
    """The helm-chart.yaml, repo-relative, for messages."""
    release: str
    namespace: str | None
    output: str
    skip_crds: bool
    directory: Path


def load_chart(rendered: Path, source_dir: Path, root: Path) -> Chart:
    """The chart ``rendered`` (a rendered helm-chart.yaml) declares; ``source_dir``: its directory in
    the checkout, where ``.helm-charts`` is looked for (then in each parent up to ``root``)."""
    shown = rel(source_dir / rendered.name, root)
    data = parse_mapping(read_text(rendered, shown), origin=shown).get("helmChart")
    if not isinstance(data, dict):
        raise RenderError(f"{shown}: needs a helmChart mapping")
    unknown = set(data) - CHART_KEYS
    if unknown:
        raise RenderError(f"{shown}: unknown keys {sorted(unknown)} under helmChart")
    if not data.get("releaseName"):
        raise RenderError(f"{shown}: helmChart.releaseName is required")
    output = str(data.get("output") or "helm-rendered.yaml")
    if "/" in output or output.startswith("."):
        raise RenderError(f"{shown}: helmChart.output must be a file name next to helm-chart.yaml")
    return Chart(shown, str(data["releaseName"]), data.get("namespace"), output, bool(data.get("skipCRDs")),
                 _chart_dir(data, source_dir, root, shown))


def _chart_dir(data: dict[str, Any], source_dir: Path, root: Path, shown: str) -> Path:
    if data.get("git"):
        raise RenderError(f"{shown}: charts from git are not supported by Shipline's kluctl mode")
    if data.get("path"):
        if data.get("repo") or data.get("chartName") or data.get("chartVersion"):
            raise RenderError(f"{shown}: path excludes repo, chartName and chartVersion")
        directory = inside(root, source_dir / str(data["path"]), f"{shown}: path {data['path']}")
        if not (directory / "Chart.yaml").is_file():
            raise RenderError(f"{shown}: no Chart.yaml in the local chart {rel(directory, root)}")
        return directory
    repo, name, version = str(data.get("repo") or ""), data.get("chartName"), data.get("chartVersion")
    if not repo or not version:
        raise RenderError(f"{shown}: a chart needs repo and chartVersion (or a local path)")
    if data.get("skipPrePull"):
        raise RenderError(f"{shown}: skipPrePull charts would be pulled at sync time; pre-pull them instead")
    oci = repo.startswith("oci://")
    name = repo.rstrip("/").rsplit("/", 1)[-1] if oci else name
    if not name:
        raise RenderError(f"{shown}: helmChart.chartName is required for a repo chart")
    what = f"helm chart {name} version {version} (repo {repo})"
    base = _charts_base(source_dir, root)
    if base is None:
        raise RenderError(f"{shown}: {what} is not pre-pulled: no .helm-charts directory above "
                          f"{rel(source_dir, root) or '.'} (run `kluctl helm-pull` and commit it)")
    directory = base / _pulled_path(repo, str(name), oci, shown) / str(version)
    if not (directory / "Chart.yaml").is_file():
        raise RenderError(f"{shown}: {what} is not pre-pulled: {rel(directory, root)} is missing "
                          "(run `kluctl helm-pull` and commit it)")
    pulled = parse_mapping(read_text(directory / "Chart.yaml", "Chart.yaml"), origin=rel(directory, root))
    if str(pulled.get("version")) != str(version):
        raise RenderError(f"{shown}: {what}: the pre-pulled chart is version {pulled.get('version')}")
    return inside(root, directory, rel(directory, root))


def _charts_base(source_dir: Path, root: Path) -> Path | None:
    for directory in [source_dir, *source_dir.parents]:
        if (directory / ".helm-charts").is_dir():
            return directory / ".helm-charts"
        if directory == root:
            break
    return None


def _pulled_path(repo: str, name: str, oci: bool, shown: str) -> Path:
    """kluctl's ``BuildRegistryPulledChartDir``."""
    url = urlsplit(repo)
    if url.scheme not in ("oci", "http", "https"):
        raise RenderError(f"{shown}: unsupported scheme in repo {repo}")
    port = str(url.port or "")
    if (url.scheme, port) in (("http", "80"), ("https", "443")):
        port = ""
    prefix = url.scheme + (f"_{port}" if port else "")
    path = Path(f"{prefix}_{(url.hostname or '').lower()}", *url.path.lower().strip("/").split("/"))
    if ".." in path.parts:
        raise RenderError(f"{shown}: repo {repo} leaves .helm-charts")
    return path if oci else path / name


def template(chart: Chart, values: dict[str, Any] | None) -> str:
    """``helm template`` of ``chart`` with ``values``; the multi-document YAML it prints."""
    helm = helm_binary()
    with tempfile.TemporaryDirectory(prefix="shipline-helm-") as tmp:
        args = [helm, "template", chart.release, str(chart.directory), "--namespace", chart.namespace or "default",
                "--skip-tests", "--skip-crds" if chart.skip_crds else "--include-crds"]
        if values:
            (Path(tmp) / "values.json").write_text(json.dumps(values))
            args += ["--values", str(Path(tmp) / "values.json")]
        env = {"PATH": os.environ.get("PATH", ""), "HOME": tmp, "HELM_CACHE_HOME": f"{tmp}/cache",
               "HELM_CONFIG_HOME": f"{tmp}/config", "HELM_DATA_HOME": f"{tmp}/data"}
        try:
            proc = subprocess.run(args, capture_output=True, text=True, timeout=HELM_TIMEOUT, env=env, check=False,
                                  cwd=tmp)
        except subprocess.TimeoutExpired:
            raise TransientError(f"{chart.config_file}: helm template took over {HELM_TIMEOUT}s") from None
    if proc.returncode != 0:
        raise RenderError(f"{chart.config_file}: helm template failed: {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def helm_binary() -> str:
    explicit = os.environ.get("SHIPLINE_HELM")
    if explicit:
        return explicit
    cache = Path(os.environ.get("SHIPLINE_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or
                                                          Path.home() / ".cache") / "shipline")
    built = sorted(cache.glob("helm/v*/helm"), key=lambda p: p.stat().st_mtime)
    if built:
        return str(built[-1])
    found = shutil.which("helm")
    if found:
        return found
    raise RenderError("helm charts need helm: run scripts/build-helm.sh (bootstrap does) or put helm on PATH")
