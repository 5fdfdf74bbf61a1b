"""Render of a kluctl project: the seed-shaped test project (``tests/kluctl/seed-project``: four
services, a pre-pulled chart with CRDs, barriers) rendered per target by Shipline's kluctl mode,
side by side with ``helm template`` alone for the chart share of it (the same chart, release,
namespace, flags and values Shipline passes), each the median of 5 runs, alternating.

Shipline's render is timed whole (``render_plan``: targets, tree, vars, Jinja2, helm, kustomize,
post-processing) and by stage, wrapping the functions it calls: ``helm.template`` (the chart) and
``_build_all`` (every item's ``kubectl kustomize``, run 4 at a time).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, Section, median, ms, ratio, say, tool_version
from handlers.settings import EnvironmentConfig
from handlers.sync.kluctl import helm
from handlers.sync.kluctl import render as kluctl_render
from handlers.sync.render import render_plan

PROJECT = REPO_ROOT / "tests" / "kluctl" / "seed-project"
TARGETS = ("staging", "production")
RUNS = 5


def bench(*, quick: bool = False) -> Section:
    section = Section("render", "Render (kluctl mode)")
    runs = 3 if quick else RUNS
    binary = helm.helm_binary()
    section.facts.append(f"Project: {PROJECT.relative_to(REPO_ROOT)}; helm "
                         f"{tool_version([binary, 'version', '--short'])} ({binary}); kubectl {_kubectl_version()}.")
    for target in TARGETS:
        _measure(section, target, runs)
    return section


def _measure(section: Section, target: str, runs: int) -> None:
    env = EnvironmentConfig.model_validate({"name": target, "git": {"url": "http://127.0.0.1/unused.git"},
                                            "render": {"mode": "kluctl", "target": target}})
    plan = render_plan(env, PROJECT)  # warm-up: imports, page cache, first helm/kubectl start
    helm_argv = _helm_argv(target)
    shipline: list[float] = []
    alone: list[float] = []
    stages: dict[str, list[float]] = {"helm": [], "kustomize": []}
    for round_ in range(runs):
        for side in ("shipline", "helm") if round_ % 2 == 0 else ("helm", "shipline"):
            if side == "helm":
                alone.append(_time(lambda: _run(helm_argv)))
                continue
            with _stages() as spent:
                shipline.append(_time(lambda: render_plan(env, PROJECT)))
            for stage, seconds in spent.items():
                stages[stage].append(seconds)
    total, chart = median(shipline), median(alone)
    in_helm, in_kustomize = median(stages["helm"]), median(stages["kustomize"])
    say(f"{target}: Shipline {ms(total)}, helm template alone {ms(chart)}")
    section.row(f"{target}: render, median of {runs}", ms(total), baseline=f"{ms(chart)} (helm template alone)",
                ratio=ratio(total, chart))
    section.facts.append(
        f"{target}: {len(plan.objects)} objects in {len(plan.phases)} phases from "
        f"{sum(len(p.items) for p in plan.phases)} items; inside Shipline's render, helm template took "
        f"{ms(in_helm)}, the kustomize builds {ms(in_kustomize)} (wall), the rest (targets, tree, vars, Jinja2, "
        f"YAML checks, post-processing) {ms(total - in_helm - in_kustomize)}.")
    section.data[target] = {"shipline": shipline, "helm_alone": alone, **stages}


def _helm_argv(target: str) -> list[str]:
    """What Shipline runs for the project's chart: same release, namespace, flags and values."""
    chart = PROJECT / ".helm-charts/https_charts.example.com/stable/traefik-lite/1.2.0"
    values = {"replicas": 1 if target == "staging" else 2, "logLevel": "INFO",
              "ingressClass": {"name": f"edge-{target}"}}
    values_file = Path(tempfile.mkdtemp(prefix="bench-helm-")) / "values.json"
    values_file.write_text(json.dumps(values))
    return [helm.helm_binary(), "template", "edge", str(chart), "--namespace", f"edge-{target}", "--skip-tests",
            "--include-crds", "--values", str(values_file)]


@contextlib.contextmanager
def _stages() -> Iterator[dict[str, float]]:
    spent = {"helm": 0.0, "kustomize": 0.0}
    originals = helm.template, kluctl_render._build_all

    def timed(stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[stage] += time.perf_counter() - began
        return wrapper

    helm.template = timed("helm", originals[0])  # type: ignore[assignment]
    kluctl_render._build_all = timed("kustomize", originals[1])  # type: ignore[assignment]
    try:
        yield spent
    finally:
        helm.template, kluctl_render._build_all = originals  # type: ignore[assignment]


def _time(fn: Callable[[], Any]) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def _run(argv: list[str]) -> None:
    subprocess.run(argv, capture_output=True, check=True, timeout=120)


def _kubectl_version() -> str:
    out = subprocess.run(["kubectl", "version", "--client", "-o", "json"], capture_output=True, text=True,
                         check=False).stdout
    try:
        return json.loads(out)["clientVersion"]["gitVersion"]
    except (ValueError, KeyError):
        return "?"
