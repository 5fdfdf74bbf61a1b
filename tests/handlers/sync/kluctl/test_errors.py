"""Bad kluctl projects: each is refused as a whole with one error naming the file and line (or the
deployment item) to fix; a render that raises returns no objects, so nothing is applied."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from handlers.sync.render import RenderError, render
from tests.handlers.sync.kluctl.seed import kluctl_env, put, seed_copy

BOMB = """
a: &a ["x","x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]
"""


def error_of(root: Path, target: str = "staging", **kwargs: object) -> str:
    with pytest.raises(RenderError) as caught:
        render(kluctl_env(target, **kwargs), root)  # type: ignore[arg-type]
    return str(caught.value)


def test_an_undefined_variable_names_the_template_and_line(tmp_path: Path) -> None:
    root = seed_copy(tmp_path)
    path = root / "services/worker/k8s/deployment.yaml"
    path.write_text(path.read_text().replace("replicas: {{ get_var('worker_replicas', 1) }}",
                                             "replicas: {{ worker_replicas }}"))
    assert error_of(root) == ("services/worker/k8s/deployment.yaml, line 6: UndefinedError: "
                              "'worker_replicas' is undefined")


def test_an_undefined_variable_in_a_deployment_yaml_names_it(tmp_path: Path) -> None:
    root = seed_copy(tmp_path)
    put(root, "services/deployment.yaml", """
        overrideNamespace: "{{ namespace }}"
        deployments:
          - include: frontend
            when: {{ feature.frontend }}
        """)
    assert error_of(root) == "services/deployment.yaml, line 4: UndefinedError: 'feature' is undefined"


def test_an_undefined_variable_in_a_when_names_the_item(tmp_path: Path) -> None:
    root = seed_copy(tmp_path)
    put(root, "services/deployment.yaml", """
        deployments:
          - include: frontend
          - include: worker
            when: features.worker
        """)
    assert error_of(root) == ("services/deployment.yaml, line 3: deployments[1].when: "
                              "UndefinedError: 'features' is undefined")


def test_an_include_cycle_is_reported_with_its_path(tmp_path: Path) -> None:
    root = seed_copy(tmp_path)
    put(root, "services/frontend/deployment.yaml", """
        deployments:
          - path: k8s
          - include: ..
        """)
    assert error_of(root) == "include cycle: . -> services -> services/frontend -> services"


def test_a_missing_vars_file_names_the_file_the_item_and_where_it_looked(tmp_path: Path) -> None:
    root = seed_copy(tmp_path)
    put(root, "services/worker/deployment.yaml", """
        vars:
          - file: values/{{ args.environment }}.yaml
        deployments:
          - path: k8s
        """)
    (root / "services/worker/values").mkdir()
    (root / "services/worker/config/staging.yaml").rename(root / "services/worker/values/staging.yaml")
    assert error_of(root, "production") == (
        "services/worker/deployment.yaml, line 2: vars[0]: vars file 'values/production.yaml' not found "
        "(looked in: services/worker, services, .)")
    render(kluctl_env("staging"), root)  # the target whose file is there renders


def test_a_chart_that_is_not_pre_pulled_names_chart_and_version(tmp_path: Path) -> None:
    root = seed_copy(tmp_path)
    path = root / "third-party/edge-router/helm-chart.yaml"
    path.write_text(path.read_text().replace("chartVersion: 1.2.0", "chartVersion: 1.3.0"))
    assert error_of(root) == (
        "third-party/edge-router/helm-chart.yaml: helm chart traefik-lite version 1.3.0 "
        "(repo https://charts.example.com/stable) is not pre-pulled: "
        ".helm-charts/https_charts.example.com/stable/traefik-lite/1.3.0 is missing "
        "(run `kluctl helm-pull` and commit it)")


def test_a_yaml_bomb_in_a_values_file_is_refused_before_helm_sees_it(tmp_path: Path) -> None:
    root = seed_copy(tmp_path)
    put(root, "third-party/edge-router/helm-values.yaml", BOMB)
    message = error_of(root)
    assert message.startswith("third-party/edge-router/helm-values.yaml (rendered): YAML expands past ")
    assert "billion laughs" in message


def test_a_yaml_bomb_in_a_vars_file_is_refused(tmp_path: Path) -> None:
    root = seed_copy(tmp_path)
    put(root, "config/staging.yaml", BOMB)
    assert error_of(root).startswith("config/staging.yaml (rendered): YAML expands past ")


def test_a_template_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    root = seed_copy(tmp_path)
    put(root, "namespaces/namespaces.yaml", """
        apiVersion: v1
        kind: Namespace
        metadata:
          name: {{ namespace }
        """)
    assert re.fullmatch(r"namespaces/namespaces\.yaml, line 4: template syntax error: .+", error_of(root))


def test_invalid_yaml_in_a_rendered_manifest_names_the_file(tmp_path: Path) -> None:
    root = seed_copy(tmp_path)
    put(root, "services/frontend/k8s/service.yaml", "kind: Service\nmetadata: [name: {{ domain }}\n")
    assert error_of(root).startswith("services/frontend/k8s/service.yaml (rendered): not valid YAML")


def test_an_unknown_target_and_a_missing_target_list_the_targets(tmp_path: Path) -> None:
    root = seed_copy(tmp_path)
    assert error_of(root, "qa") == ".kluctl.yaml: no target 'qa' (targets: ['production', 'staging'])"
    assert error_of(root, None) == (".kluctl.yaml: defines targets ['production', 'staging']; "
                                    "choose one with render.target")


def test_a_required_arg_without_a_value_is_an_error(tmp_path: Path) -> None:
    root = seed_copy(tmp_path)
    put(root, ".kluctl.yaml", """
        targets:
          - name: staging
        args:
          - name: environment
        """)
    assert error_of(root) == (".kluctl.yaml: required arg 'environment' is not set "
                              "(by the target or render.args)")


def test_unknown_keys_and_unsupported_items_name_their_line(tmp_path: Path) -> None:
    root = seed_copy(tmp_path)
    put(root, "services/deployment.yaml", """
        deployments:
          - include: frontend

          - pth: backend
        """)
    assert error_of(root) == "services/deployment.yaml, line 4: deployments[1]: unknown keys ['pth']"
    put(root, "services/deployment.yaml", """
        deployments:
          - git:
              url: https://example.com/other.git
        """)
    assert error_of(root) == ("services/deployment.yaml, line 2: deployments[0]: git includes "
                              "(a sync reads only its own repository) are not supported by Shipline's kluctl mode")


def test_a_path_that_leaves_the_repository_is_refused(tmp_path: Path) -> None:
    root = seed_copy(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "services/frontend/elsewhere").symlink_to(outside)
    put(root, "services/frontend/deployment.yaml", """
        deployments:
          - path: elsewhere
        """)
    assert error_of(root) == ("services/frontend/deployment.yaml, line 2: deployments[0] (elsewhere): "
                              "path/include is not part of the repository")


def test_hooks_are_refused_rather_than_applied_as_ordinary_objects(tmp_path: Path) -> None:
    root = seed_copy(tmp_path)
    put(root, "services/migrations/k8s/job.yaml", """
        apiVersion: batch/v1
        kind: Job
        metadata:
          name: migrate
          annotations:
            kluctl.io/hook: pre-deploy
        spec:
          template:
            spec:
              restartPolicy: Never
              containers: [{name: m, image: "m:{{ version }}"}]
        """)
    assert error_of(root) == (
        "services/migrations/deployment.yaml, line 5: deployments[0]: Job/migrate is a hook (pre-deploy); hooks are "
        "not supported by Shipline's kluctl mode (remove the hook annotation to apply it as an ordinary object)")


def test_kustomize_resources_outside_the_project_are_refused(tmp_path: Path) -> None:
    root = seed_copy(tmp_path)
    put(root, "services/backend/k8s/kustomization.yaml", """
        resources:
          - deployment.yaml
          - https://github.com/example/manifests//base?ref=main
        """)
    assert error_of(root) == (
        "services/backend/k8s/kustomization.yaml: resources entry "
        "'https://github.com/example/manifests//base?ref=main' is not a file or directory of the project "
        "(remote and out-of-repository resources are not supported)")


def test_an_object_rendered_by_two_items_is_refused(tmp_path: Path) -> None:
    root = seed_copy(tmp_path)
    put(root, "services/worker/k8s/extra.yaml", """
        apiVersion: v1
        kind: Secret
        metadata: {name: backend-db}
        """)
    assert error_of(root) == ("Secret/shop-staging/backend-db is rendered twice: by services/backend/k8s "
                              "and by services/worker/k8s")


def test_a_template_that_renders_without_end_is_stopped(tmp_path: Path) -> None:
    root = seed_copy(tmp_path)
    put(root, "namespaces/namespaces.yaml", """
        {% for a in range(100000) %}{% for b in range(100000) %}{{ "x" * 1000 }}{% endfor %}{% endfor %}
        """)
    assert error_of(root) == "namespaces/namespaces.yaml: renders to more than 16777216 characters; refused"
