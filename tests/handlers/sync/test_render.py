"""Rendering: plain directories, ``kubectl kustomize`` and kluctl-style Jinja2, and errors that
name the file and line. Objects are compared with what kustomize prints / the templates define."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from handlers.settings import EnvironmentConfig
from handlers.sync.render import RenderError, render
from tests.handlers.sync.conftest import write


def env_for(mode: str = "plain", path: str = "deploy", vars: list[str] | None = None) -> EnvironmentConfig:
    return EnvironmentConfig.model_validate({
        "name": "staging", "namespace": "apps", "git": {"url": "http://x/y.git", "path": path},
        "render": {"mode": mode, "vars": vars or []},
    })


def test_plain_reads_nested_multi_document_files_in_order_skipping_empty_documents(tmp_path: Path) -> None:
    write(tmp_path, "deploy/b/two.yml", "---\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    write(tmp_path, "deploy/a.yaml", """
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: a}
        ---
        # only a comment
        ---
        apiVersion: v1
        kind: List
        items:
          - {apiVersion: v1, kind: Secret, metadata: {name: b}}
        """)
    write(tmp_path, "deploy/notes.txt", "not yaml: [")

    objects = render(env_for(), tmp_path)

    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
        ("ConfigMap", "a"), ("Secret", "b"), ("ConfigMap", "c")]


def test_kustomize_target_renders_exactly_as_kubectl_kustomize(tmp_path: Path) -> None:
    write(tmp_path, "base/kustomization.yaml", """
        resources: [app.yaml]
        configMapGenerator:
          - name: settings
            literals: [greeting=hello]
        """)
    write(tmp_path, "base/app.yaml", """
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web}
        spec:
          selector: {matchLabels: {app: web}}
          template:
            metadata: {labels: {app: web}}
            spec:
              containers: [{name: app, image: 127.0.0.1:5000/app:1}]
        """)
    write(tmp_path, "overlays/staging/kustomization.yaml", """
        resources: [../../base]
        namePrefix: stg-
        labels: [{pairs: {tier: staging}}]
        images: [{name: 127.0.0.1:5000/app, newTag: "2"}]
        """)
    expected = list(yaml.safe_load_all(subprocess.run(
        ["kubectl", "kustomize", str(tmp_path / "overlays/staging")],
        capture_output=True, text=True, check=True).stdout))

    objects = render(env_for("kustomize", "overlays/staging"), tmp_path)

    assert objects == expected
    names = {o["metadata"]["name"] for o in objects}
    assert "stg-web" in names and any(n.startswith("stg-settings-") for n in names)
    web = next(o for o in objects if o["kind"] == "Deployment")
    assert web["spec"]["template"]["spec"]["containers"][0]["image"] == "127.0.0.1:5000/app:2"
    assert web["metadata"]["labels"] == {"tier": "staging"}


def test_kustomize_failure_is_a_render_error_with_kustomize_message(tmp_path: Path) -> None:
    write(tmp_path, "deploy/kustomization.yaml", "resources: [missing.yaml]\n")

    with pytest.raises(RenderError, match="missing.yaml"):
        render(env_for("kustomize"), tmp_path)


def test_jinja2_target_renders_templates_with_merged_vars_files(tmp_path: Path) -> None:
    write(tmp_path, "config/common.yaml", "app: {name: web, replicas: 1, tag: '1.0.0'}\nfeature: false\n")
    write(tmp_path, "config/staging.yaml", "app: {replicas: 3}\nfeature: true\n")
    write(tmp_path, "deploy/app.yaml", """
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: {{ app.name }}
          namespace: {{ shipline.namespace }}
        spec:
          replicas: {{ app.replicas }}
          template:
            spec:
              containers:
                - name: {{ app.name }}
                  image: "127.0.0.1:5000/{{ app.name }}:{{ app.tag }}"
        {% if feature %}
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: {{ app.name }}-feature}
        data:
        {% for n in range(2) %}
          key{{ n }}: "{{ shipline.env }}"
        {% endfor %}
        {% endif %}
        """)

    objects = render(env_for("jinja2", vars=["config/common.yaml", "config/staging.yaml"]), tmp_path)

    expected: list[dict[str, Any]] = [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "apps"},
         "spec": {"replicas": 3, "template": {"spec": {"containers": [
             {"name": "web", "image": "127.0.0.1:5000/web:1.0.0"}]}}}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web-feature"},
         "data": {"key0": "staging", "key1": "staging"}},
    ]
    assert objects == expected


@pytest.mark.parametrize(("mode", "text", "line", "what"), [
    ("jinja2", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  labels: {a: '{{ nope }}'}\n",
     5, "'nope' is undefined"),
    ("jinja2", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: '{{ x( }}'}\n", 3, "syntax error"),
    ("jinja2", "a: 1\n\n{{ 1 // 0 }}\n", 3, "ZeroDivisionError"),
    ("plain", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [x\n", 4, "not valid YAML"),
])
def test_render_errors_name_the_file_and_the_line(tmp_path: Path, mode: str, text: str, line: int,
                                                  what: str) -> None:
    write(tmp_path, "deploy/sub/app.yaml", text)

    with pytest.raises(RenderError) as caught:
        render(env_for(mode), tmp_path)

    message = str(caught.value)
    assert "sub/app.yaml" in message and f"line {line}" in message and what in message


def test_jinja2_sandbox_refuses_unsafe_attribute_access(tmp_path: Path) -> None:
    write(tmp_path, "deploy/app.yaml", "x: {{ ''.__class__.__mro__ }}\n")

    with pytest.raises(RenderError, match="app.yaml, line 1.*unsafe"):
        render(env_for("jinja2"), tmp_path)


def test_missing_vars_file_is_a_render_error(tmp_path: Path) -> None:
    write(tmp_path, "deploy/app.yaml", "a: 1\n")

    with pytest.raises(RenderError, match="config/prod.yaml: vars file does not exist"):
        render(env_for("jinja2", vars=["config/prod.yaml"]), tmp_path)


def test_objects_without_kind_or_name_are_refused_with_their_document_number(tmp_path: Path) -> None:
    write(tmp_path, "deploy/app.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\nfoo: bar\n")

    with pytest.raises(RenderError, match=r"deploy/app.yaml: document 2: an object needs apiVersion"):
        render(env_for(), tmp_path)


def test_alias_bomb_is_refused(tmp_path: Path) -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
              f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
              f"*{chr(97 + i)}, *{chr(97 + i)}]" for i in range(8)]
    write(tmp_path, "deploy/bomb.yaml", "\n".join(lines) + "\n")

    with pytest.raises(RenderError, match="billion laughs"):
        render(env_for(), tmp_path)


def test_symlink_out_of_the_checkout_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside.yaml"
    outside.write_text("apiVersion: v1\nkind: Secret\nmetadata: {name: stolen}\n")
    repo = tmp_path / "repo"
    (repo / "deploy").mkdir(parents=True)
    (repo / "deploy/link.yaml").symlink_to(outside)

    with pytest.raises(RenderError, match="outside the repository"):
        render(env_for(), repo)


def test_path_missing_from_the_checkout_is_a_render_error(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="deploy: path does not exist"):
        render(env_for(), tmp_path)
