"""A kluctl project rendered for one target, as phases split by barriers.

The steps follow ``kluctl render``: load the target (``project``), walk the deployment tree
(``tree``), render each item's directory with its variables and Helm charts into a private render
tree (``item``), build each with kustomize (in parallel: subprocesses), post-process the objects
(``postprocess``). Items before a barrier form one phase; each phase lists the objects that must be
ready before the next one is applied (``readiness.must_wait``, or the item's ``waitReadiness``).
"""

from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from handlers.settings import EnvironmentConfig
from handlers.sync import readiness
from handlers.sync.kluctl import kustomize
from handlers.sync.kluctl.item import RenderedItem, render_item
from handlers.sync.kluctl.postprocess import fix_helm_namespaces, postprocess
from handlers.sync.kluctl.project import Target, load_target
from handlers.sync.kluctl.tree import Item, walk
from handlers.sync.kustomizebuild import kustomize_build
from handlers.sync.manifestio import RenderError, inside, parse_objects, rel
from handlers.sync.objects import Obj, ObjRef, ref_of

KUSTOMIZE_WORKERS = 4


@dataclass(frozen=True)
class Phase:
    objects: list[Obj] = field(default_factory=list)
    wait: tuple[ObjRef, ...] = ()
    """Applied objects that must be ready (``readiness.is_ready``) before the next phase starts."""
    items: tuple[str, ...] = ()
    """The deployment items (repo-relative directories) whose objects these are."""


@dataclass(frozen=True)
class KluctlRender:
    target: Target
    phases: list[Phase]

    @property
    def discriminator(self) -> str:
        return self.target.discriminator


def render_project(env: EnvironmentConfig, checkout: Path) -> KluctlRender:
    root = checkout.resolve()
    project_dir = inside(root, root / env.git.path, env.git.path)
    if not project_dir.is_dir():
        raise RenderError(f"{env.git.path}: the kluctl project directory does not exist in the repository")
    target = load_target(project_dir, root, env.render.target, env.render.args, context=env.cluster.context)
    items = walk(root, project_dir, target)
    with tempfile.TemporaryDirectory(prefix="shipline-kluctl-") as tmp:
        rendered = {id(i): render_item(i, root, Path(tmp)) for i in items if i.directory is not None}
        kustomize.check_references(Path(tmp))
        built = _build_all([r for r in rendered.values() if not r.item.config.get("onlyRender")], root)
    phases = _phases(items, rendered, built, target, root)
    _refuse_duplicates(phases)
    return KluctlRender(target, phases)


def _build_all(rendered: list[RenderedItem], root: Path) -> dict[int, list[Obj]]:
    def build(r: RenderedItem) -> list[Obj]:
        shown = rel(r.item.directory, root) if r.item.directory else "?"
        text = kustomize_build(r.directory, f"{r.item.origin} ({shown})")
        return parse_objects(text, origin=f"kustomize build of {shown}")

    with ThreadPoolExecutor(max_workers=KUSTOMIZE_WORKERS) as pool:
        results = list(pool.map(build, rendered))
    return {id(r.item): objects for r, objects in zip(rendered, results, strict=True)}


def _phases(items: list[Item], rendered: dict[int, RenderedItem], built: dict[int, list[Obj]], target: Target,
            root: Path) -> list[Phase]:
    done = {id(i): postprocess(i, built[id(i)], discriminator=target.discriminator,
                               item_dir=rel(i.directory, root) if i.directory else "")
            for i in items if id(i) in built}
    fix_helm_namespaces(o for objects in done.values() for o in objects)
    phases: list[Phase] = []
    current = Phase()
    for item in items:
        result = rendered.get(id(item))
        if id(item) in done:
            waits_all = bool(item.config.get("waitReadiness")) or bool(result and result.wait_readiness)
            objects = done[id(item)]
            current = Phase([*current.objects, *objects],
                            (*current.wait, *(ref_of(o) for o in objects if waits_all or readiness.must_wait(o))),
                            (*current.items, rel(item.directory, root) if item.directory else ""))
        if (item.barrier or (result is not None and result.barrier)) and current.objects:
            phases.append(current)
            current = Phase()
    return [*phases, current] if current.objects else phases


def _refuse_duplicates(phases: list[Phase]) -> None:
    seen: dict[tuple[str, str, str, str], str] = {}
    for phase in phases:
        for obj in phase.objects:
            ref = ref_of(obj)
            where = ((obj["metadata"].get("annotations") or {}).get("kluctl.io/deployment-item-dir")) or "?"
            if ref.key in seen:
                raise RenderError(f"{ref} is rendered twice: by {seen[ref.key]} and by {where}")
            seen[ref.key] = where
