"""The seed-shaped kluctl project rendered for staging and production: the whole result against the
golden files (``tests/golden/kluctl/<target>.yaml``), and, one test each, the rules of kluctl's
documentation the goldens embody, so a wrong golden cannot hide a wrong rule.

``SHIPLINE_REGEN_GOLDEN=1`` rewrites the golden files (then review the diff by hand).
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import tarfile
from typing import Any

import pytest
import yaml

from handlers.sync.kluctl.helm import helm_binary
from handlers.sync.render import RenderPlan, describe, render, render_phases, render_plan
from tests.handlers.sync.kluctl.seed import GOLDEN, SEED, by_name, kluctl_env


def golden_view(plan: RenderPlan) -> dict[str, Any]:
    return {
        "target": plan.target, "discriminator": plan.discriminator, "args": plan.args,
        "phases": [{"items": list(p.items), "wait": [str(r) for r in p.wait], "objects": p.objects}
                   for p in plan.phases],
    }


@pytest.fixture(scope="module")
def plans() -> dict[str, RenderPlan]:
    return {t: render_plan(kluctl_env(t), SEED) for t in ("staging", "production")}


@pytest.mark.parametrize("target", ["staging", "production"])
def test_target_renders_to_its_golden_file(plans: dict[str, RenderPlan], target: str) -> None:
    view = golden_view(plans[target])
    golden = GOLDEN / f"{target}.yaml"
    if os.environ.get("SHIPLINE_REGEN_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(f"# kluctl render of tests/kluctl/seed-project, target {target} (regenerate with "
                          "SHIPLINE_REGEN_GOLDEN=1, review by hand)\n" + yaml.safe_dump(view, sort_keys=False))
    assert view == yaml.safe_load(golden.read_text())


def test_render_is_the_phases_flattened_and_phases_split_at_every_barrier(plans: dict[str, RenderPlan]) -> None:
    env = kluctl_env("staging")
    phases = render_phases(env, SEED)
    assert [p for p in phases] == [p.objects for p in plans["staging"].phases]
    assert render(env, SEED) == [o for p in phases for o in p]
    # namespaces | barrier | the chart (include with barrier: true) | migrations (barrier) | the services
    assert [list(p.items) for p in plans["staging"].phases] == [
        ["namespaces"], ["third-party/edge-router"], ["services/migrations/k8s"],
        ["services/frontend/k8s", "services/frontend/debug", "services/backend/k8s", "services/worker/k8s"]]


def test_barriers_wait_for_namespaces_crds_and_wait_readiness_items(plans: dict[str, RenderPlan]) -> None:
    waits = [[str(r) for r in p.wait] for p in plans["production"].phases]
    assert waits == [
        ["Namespace/shop-production", "Namespace/edge-production"],
        ["CustomResourceDefinition/ingressroutes.traefik.io", "CustomResourceDefinition/middlewares.traefik.io"],
        ["Job/shop-production/migrate-1-0-0"],  # waitReadiness: true on the migrations item
        [],
    ]


def test_every_object_carries_the_discriminator_tags_and_item_dir(plans: dict[str, RenderPlan]) -> None:
    plan = plans["staging"]
    assert plan.discriminator == "shop-staging"  # "shop-{{ target.name }}" in .kluctl.yaml
    for obj in plan.objects:
        meta = obj["metadata"]
        assert meta["labels"]["kluctl.io/discriminator"] == "shop-staging"
        assert meta["annotations"]["kluctl.io/deployment-item-dir"] in {i for p in plan.phases for i in p.items}
    frontend = by_name(plan.objects)["Deployment/frontend"]["metadata"]["labels"]
    # tags: the include items' default tags (last path element), outermost last, then the item's own
    assert {k: v for k, v in frontend.items() if k.startswith("kluctl.io/tag-")} == {
        "kluctl.io/tag-0": "frontend", "kluctl.io/tag-1": "services", "kluctl.io/tag-2": "k8s"}


def test_common_labels_are_inherited_and_the_nearer_project_wins(plans: dict[str, RenderPlan]) -> None:
    objects = by_name(plans["production"].objects)
    worker = objects["Deployment/worker"]["metadata"]
    assert {k: worker["labels"][k] for k in ("app.kubernetes.io/part-of", "shop.example.com/environment",
                                             "shop.example.com/tier", "app.kubernetes.io/name")} == {
        "app.kubernetes.io/part-of": "shop", "shop.example.com/environment": "production",
        "shop.example.com/tier": "services", "app.kubernetes.io/name": "worker"}
    assert worker["annotations"]["shop.example.com/owner"] == "platform-team"  # commonAnnotations at the root
    # commonLabels go on metadata only (kluctl does not use kustomize's commonLabels): selectors stay
    assert objects["Deployment/worker"]["spec"]["selector"] == {"matchLabels": {"app": "worker"}}
    assert "shop.example.com/tier" not in objects["Namespace/shop-production"]["metadata"]["labels"]


def test_override_namespace_applies_to_the_services_and_cluster_scoped_objects_keep_none(
        plans: dict[str, RenderPlan]) -> None:
    objects = by_name(plans["staging"].objects)
    for name in ("Deployment/frontend", "IngressRoute/frontend", "Middleware/frontend-headers", "Secret/backend-db",
                 "Job/migrate-0-0-0-4-g1a2b3c4", "ConfigMap/worker-queues"):
        assert objects[name]["metadata"]["namespace"] == "shop-staging", name
    for name in ("Namespace/shop-staging", "ClusterRole/edge-edge-staging-traefik", "IngressClass/edge-staging",
                 "CustomResourceDefinition/middlewares.traefik.io"):
        assert "namespace" not in objects[name]["metadata"], name


def test_chart_renders_with_its_crds_in_the_release_namespace_without_test_hooks(
        plans: dict[str, RenderPlan]) -> None:
    chart = plans["production"].phases[1].objects
    assert [f"{o['kind']}/{o['metadata']['name']}" for o in chart][:2] == [
        "CustomResourceDefinition/ingressroutes.traefik.io", "CustomResourceDefinition/middlewares.traefik.io"]
    objects = by_name(chart)
    assert objects["Deployment/edge-traefik"]["metadata"]["namespace"] == "edge-production"
    assert objects["Deployment/edge-traefik"]["spec"]["replicas"] == 2  # helm-values.yaml, templated
    assert objects["ClusterRoleBinding/edge-edge-production-traefik"]["subjects"][0]["namespace"] == "edge-production"
    assert "Pod/edge-traefik-test" not in objects  # helm.sh/hook: test
    assert all("kluctl.io/helm-install-namespace" not in (o["metadata"].get("annotations") or {}) for o in chart)


def test_vars_come_from_templated_file_names_per_target(plans: dict[str, RenderPlan]) -> None:
    staging, production = (by_name(plans[t].objects) for t in ("staging", "production"))
    image = "registry.example.com/shop/frontend"
    assert staging["Deployment/frontend"]["spec"]["template"]["spec"]["containers"][0]["image"] == \
        f"{image}:0.0.0-4-g1a2b3c4"
    assert production["Deployment/frontend"]["spec"]["template"]["spec"]["containers"][0]["image"] == f"{image}:1.0.0"
    assert production["Deployment/frontend"]["spec"]["replicas"] == 3
    routes = production["IngressRoute/frontend"]["spec"]["routes"]
    assert [r["match"] for r in routes] == ["Host(`shop.example.com`)", "Host(`www.shop.example.com`)"]


def test_filters_and_functions_projects_use(plans: dict[str, RenderPlan]) -> None:
    objects = by_name(plans["staging"].objects)
    secret = objects["Secret/backend-db"]
    assert base64.b64decode(secret["data"]["password"]).decode() == "staging-not-secret"  # b64encode
    worker = objects["Deployment/worker"]["spec"]["template"]["spec"]["containers"][0]
    assert worker["env"] == [{"name": "LOG_LEVEL", "value": "debug"}]  # to_json
    assert yaml.safe_load(objects["ConfigMap/worker-queues"]["data"]["queues.yaml"]) == {
        "orders": {"concurrency": 2}, "mails": {"concurrency": 1}}  # to_yaml | indent
    checksum = objects["Deployment/backend"]["spec"]["template"]["metadata"]["annotations"]["checksum/secret"]
    rendered_secret = (SEED / "services/backend/k8s/secret.yaml").read_text() \
        .replace("{{ database.user | b64encode }}", base64.b64encode(b"shop").decode()) \
        .replace("{{ database.password | b64encode }}", base64.b64encode(b"staging-not-secret").decode())
    assert checksum == hashlib.sha256(rendered_secret.rstrip("\n").encode()).hexdigest()[:16]  # load_sha256


def test_templateignore_files_are_copied_unrendered_and_kustomize_generators_run(
        plans: dict[str, RenderPlan]) -> None:
    objects = by_name(plans["staging"].objects)
    [settings] = [o for name, o in objects.items() if name.startswith("ConfigMap/backend-settings-")]
    assert "{{ .Env.PORT }}" in settings["data"]["settings.tmpl"]
    volume = objects["Deployment/backend"]["spec"]["template"]["spec"]["volumes"][0]
    assert volume["configMap"]["name"] == settings["metadata"]["name"]  # kustomize's name reference


def test_when_on_an_item_follows_the_target(plans: dict[str, RenderPlan]) -> None:
    assert by_name(plans["staging"].objects)["ConfigMap/frontend-debug"]["data"] == {
        "target": "staging", "context": "staging.example.com"}
    assert "ConfigMap/frontend-debug" not in by_name(plans["production"].objects)


def test_args_override_the_targets_and_defaults_fill_in(tmp_path: Any) -> None:
    plan = render_plan(kluctl_env("staging", args={"edge_debug": True}), SEED)
    assert plan.args == {"environment": "staging", "edge_debug": True}
    edge = by_name(plan.objects)["Deployment/edge-traefik"]["spec"]["template"]["spec"]["containers"][0]
    assert "--log.level=DEBUG" in edge["args"]
    assert render_plan(kluctl_env("staging"), SEED).args["edge_debug"] is False


def test_status_and_config_check_name_the_target() -> None:
    assert describe(kluctl_env("production")) == "kluctl target=production"
    assert describe(kluctl_env("staging", args={"edge_debug": True})) == "kluctl target=staging edge_debug=True"


def test_the_pre_pulled_chart_is_laid_out_as_helm_pull_leaves_it(tmp_path: Any) -> None:
    chart = SEED / ".helm-charts/https_charts.example.com/stable/traefik-lite/1.2.0"
    subprocess.run([helm_binary(), "package", str(chart), "-d", str(tmp_path)], check=True, capture_output=True)
    with tarfile.open(tmp_path / "traefik-lite-1.2.0.tgz") as archive:
        archive.extractall(tmp_path / "pulled", filter="data")
    pulled = tmp_path / "pulled" / "traefik-lite"
    files = sorted(str(p.relative_to(pulled)) for p in pulled.rglob("*") if p.is_file())
    assert files == sorted(str(p.relative_to(chart)) for p in chart.rglob("*") if p.is_file())
    assert all((pulled / f).read_bytes() == (chart / f).read_bytes() for f in files)
