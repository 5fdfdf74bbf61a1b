"""kluctl's templating rules on small projects: the vars order and precedence of its documentation
(``templating/variable-sources.md``), target and args resolution (``kluctl-project``), the filters
and functions (``templating/filters.md``, ``functions.md``), include search paths, ``.templateignore``
and the sandbox."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from handlers.sync.render import RenderError, render, render_plan
from tests.handlers.sync.kluctl.seed import by_name, kluctl_env, put

KLUCTL = """
targets:
  - name: dev
    context: dev.example.com
    args: {environment: dev, nested: {a: 1, b: 2}}
discriminator: "demo-{{ target.name }}-{{ args.environment }}"
args:
  - name: environment
  - name: flavour
    default: plain
  - name: nested
    default: {a: 0, b: 0, c: 0}
"""


def configmap(data: str, name: str = "out") -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n{data}"


def project(tmp_path: Path, deployment: str, files: dict[str, str]) -> Path:
    put(tmp_path, ".kluctl.yaml", KLUCTL)
    put(tmp_path, "deployment.yaml", deployment)
    for rel, text in files.items():
        put(tmp_path, rel, text)
    return tmp_path


def data_of(root: Path, name: str = "out", **env: Any) -> dict[str, Any]:
    objects = render(kluctl_env("dev", **env), root)
    return by_name(objects)[f"ConfigMap/{name}"]["data"]


def test_vars_load_in_order_later_sources_override_and_may_use_earlier_ones(tmp_path: Path) -> None:
    root = project(tmp_path, """
        vars:
          - file: vars/base.yaml
          - file: vars/{{ args.environment }}.yaml
          - values: {size: large, deep: {y: 20}}
        deployments:
          - path: app
        """, {
        "vars/base.yaml": "size: small\ncolour: red\ndeep: {x: 1, y: 2}\nlist: [1, 2]\n",
        "vars/dev.yaml": "colour: '{{ size }}-blue'\nlist: [3]\n",
        "app/cm.yaml": configmap('  v: "{{ size }} {{ colour }} {{ deep.x }} {{ deep.y }} {{ list }}"\n'),
    })
    # mappings merge key by key, lists and scalars are replaced; vars2 saw vars1's size
    assert data_of(root) == {"v": "large small-blue 1 20 [3]"}


def test_no_override_loads_defaults_under_what_is_there(tmp_path: Path) -> None:
    root = project(tmp_path, """
        vars:
          - values: {a: set, nested: {k: set}}
          - file: defaults.yaml
            noOverride: true
        deployments:
          - path: app
        """, {
        "defaults.yaml": "a: default\nb: default\nnested: {k: default, j: default}\n",
        "app/cm.yaml": configmap('  v: "{{ a }} {{ b }} {{ nested.k }} {{ nested.j }}"\n'),
    })
    assert data_of(root) == {"v": "set default set default"}


def test_target_path_multidoc_ignore_missing_and_when(tmp_path: Path) -> None:
    root = project(tmp_path, """
        vars:
          - file: docs.yaml
            multidoc: true
            targetPath: docs
          - file: absent.yaml
            ignoreMissing: true
          - values: {skipped: yes}
            when: args.environment == "prod"
          - values: {taken: yes}
            when: args.environment == "dev"
        deployments:
          - path: app
        """, {
        "docs.yaml": "name: one\n---\nname: two\n",
        "app/cm.yaml": configmap('  v: "{{ docs | map(attribute=\'name\') | join(\',\') }} '
                                 '{{ skipped is defined }} {{ taken }}"\n'),
    })
    assert data_of(root) == {"v": "one,two False True"}


def test_item_vars_are_the_items_and_include_vars_reach_the_whole_include(tmp_path: Path) -> None:
    root = project(tmp_path, """
        vars:
          - values: {who: root}
        deployments:
          - path: app
            vars:
              - values: {who: item}
          - path: other
          - include: sub
            vars:
              - values: {who: include}
        """, {
        "app/cm.yaml": configmap('  v: "{{ who }}"\n', "app"),
        "other/cm.yaml": configmap('  v: "{{ who }}"\n', "other"),
        "sub/deployment.yaml": "deployments:\n  - path: inner\n",
        "sub/inner/cm.yaml": configmap('  v: "{{ who }}"\n', "inner"),
    })
    objects = by_name(render(kluctl_env("dev"), root))
    assert [objects[f"ConfigMap/{n}"]["data"]["v"] for n in ("app", "other", "inner")] == ["item", "root", "include"]


def test_a_projects_own_vars_are_not_visible_in_its_deployment_yaml(tmp_path: Path) -> None:
    root = project(tmp_path, """
        vars:
          - values: {late: 1}
        deployments:
          - path: "{{ late }}"
        """, {})
    with pytest.raises(RenderError, match=r"^deployment.yaml, line 4: UndefinedError: 'late' is undefined$"):
        render(kluctl_env("dev"), root)


def test_raw_values_see_earlier_vars_as_the_docs_describe(tmp_path: Path) -> None:
    root = project(tmp_path, """
        vars:
          - values: {a: 1}
        {% raw %}
          - values:
              c: "{{ a }}"
        {% endraw %}
        deployments:
          - path: app
        """, {"app/cm.yaml": configmap('  v: "{{ c }}"\n')})
    assert data_of(root) == {"v": "1"}


def test_args_target_overrides_and_defaults(tmp_path: Path) -> None:
    root = project(tmp_path, "deployments:\n  - path: app\n", {
        "app/cm.yaml": configmap('  v: "{{ args.environment }} {{ args.flavour }} {{ args.nested.a }}'
                                 '{{ args.nested.b }}{{ args.nested.c }} {{ target.name }} {{ target.context }}"\n'),
    })
    assert data_of(root) == {"v": "dev plain 120 dev dev.example.com"}
    assert data_of(root, args={"flavour": "spicy", "nested": {"b": 9}}) == {"v": "dev spicy 190 dev dev.example.com"}
    plan = render_plan(kluctl_env("dev"), root)
    assert plan.discriminator == "demo-dev-dev"  # rendered with target and args only
    assert by_name(plan.objects)["ConfigMap/out"]["metadata"]["labels"]["kluctl.io/discriminator"] == "demo-dev-dev"
    assert data_of(root, cluster={"context": "kind-dev"})["v"].endswith("kind-dev")


def test_a_project_without_kluctl_yaml_or_deployment_yaml_is_one_item(tmp_path: Path) -> None:
    put(tmp_path, "cm.yaml", configmap('  v: "{{ args | length }}"\n'))
    objects = render(kluctl_env(None), tmp_path)
    assert objects[0]["data"] == {"v": "0"}
    assert "kluctl.io/discriminator" not in objects[0]["metadata"]["labels"]


def test_filters(tmp_path: Path) -> None:
    root = project(tmp_path, "deployments:\n  - path: app\n", {
        "app/cm.yaml": configmap(
            '  b64: "{{ "test" | b64encode }}"\n'
            '  back: "{{ "dGVzdA==" | b64decode }}"\n'
            '  sha: "{{ "some-string" | sha256 }}"\n'
            '  sha6: "{{ "some-string" | sha256(6) }}"\n'
            '  json: {{ {"a": [1, "2"]} | to_json | tojson }}\n'
            '  yaml: |\n    {{ {"k": "line1\\nline2", "n": "007"} | to_yaml | indent(4) }}\n'
            '  parsed: "{{ ("x: [1, 2]" | from_yaml).x | sum }}"\n'),
    })
    data = data_of(root)
    assert data["b64"] == "dGVzdA==" and data["back"] == "test"
    assert data["sha"] == hashlib.sha256(b"some-string").hexdigest() and data["sha6"] == data["sha"][:6]
    assert data["json"] == '{"a": [1, "2"]}'
    assert data["yaml"] == "k: |-\n  line1\n  line2\nn: '007'\n"  # kluctl's MultilineStrDumper
    assert data["parsed"] == "3"


def test_functions(tmp_path: Path) -> None:
    root = project(tmp_path, """
        vars:
          - values: {my: {deep: {var: value}}, d1: {a: {x: 1}}, d2: {a: {y: 2}}}
        deployments:
          - path: app
        """, {
        "app/snippet.j2": "hello {{ args.environment }}",
        "app/nested/part.j2": "{% include './sibling.j2' %}",
        "app/nested/sibling.j2": "relative",
        "app/blob.bin": "AB",
        "app/cm.yaml": configmap(
            '  get: "{{ get_var(\'my.deep.var\', \'d\') }} {{ get_var([\'nope.x\', \'my.deep.var\']) }} '
            '{{ get_var(\'my.none\', \'default\') }}"\n'
            '  merged: "{{ merge_dict(d1, d2) }} {{ d1 }}"\n'
            '  tpl: "{{ load_template(\'snippet.j2\') }} {{ load_template(\'nested/part.j2\') }}"\n'
            '  b64: "{{ load_base64(\'blob.bin\') }}"\n'
            '  r: "{{ render(\'{{ my.deep.var }}\') }}"\n'),
    })
    data = data_of(root)
    assert data["get"] == "value value default"
    assert data["merged"] == "{'a': {'x': 1, 'y': 2}} {'a': {'x': 1}}"
    assert data["tpl"] == "hello dev relative"
    assert data["b64"] == "QUI="
    assert data["r"] == "value"


def test_raise_and_unsupported_functions_fail_with_file_and_line(tmp_path: Path) -> None:
    root = project(tmp_path, "deployments:\n  - path: app\n", {
        "app/cm.yaml": configmap('  a: "{{ raise(\'stop here\') }}"\n'),
    })
    with pytest.raises(RenderError, match=r"^app/cm.yaml, line 6: TemplateError: stop here$"):
        render(kluctl_env("dev"), root)
    put(root, "app/cm.yaml", configmap('  a: "{{ images.get_image(\'x\') }}"\n'))
    with pytest.raises(RenderError, match=r"line 6: TemplateError: not supported .*images.get_image"):
        render(kluctl_env("dev"), root)


def test_templates_are_searched_in_the_item_then_each_project_up_to_the_root(tmp_path: Path) -> None:
    root = project(tmp_path, "deployments:\n  - include: sub\n", {
        "macros.j2": "{% macro name() %}from-root{% endmacro %}",
        "sub/macros.j2": "{% macro name() %}from-sub{% endmacro %}",
        "sub/deployment.yaml": "deployments:\n  - path: app\n",
        "sub/app/cm.yaml": '{% import "macros.j2" as m %}' + configmap('  v: "{{ m.name() }}"\n'),
    })
    assert data_of(root) == {"v": "from-sub"}
    (root / "sub/macros.j2").unlink()
    assert data_of(root) == {"v": "from-root"}


def test_the_sandbox_refuses_python_internals(tmp_path: Path) -> None:
    root = project(tmp_path, "deployments:\n  - path: app\n", {
        "app/cm.yaml": configmap('  v: "{{ \'\'.__class__.__mro__[1].__subclasses__() }}"\n'),
    })
    with pytest.raises(RenderError, match=r"^app/cm.yaml, line 6: SecurityError: access to attribute '__class__'"):
        render(kluctl_env("dev"), root)


def test_templateignore_patterns_apply_below_their_directory_and_negate(tmp_path: Path) -> None:
    root = project(tmp_path, "deployments:\n  - path: app\n", {
        ".templateignore": "*.raw.yaml\n",
        "app/.templateignore": "!keep.raw.yaml\nsub/\n",
        "app/a.raw.yaml": configmap('  v: "{{ not rendered }}"\n', "a"),
        "app/keep.raw.yaml": configmap('  v: "{{ args.environment }}"\n', "keep"),
        "app/kustomization.yaml": "resources: [a.raw.yaml, keep.raw.yaml, sub/b.yaml]\n",
        "app/sub/b.yaml": configmap('  v: "{{ also not }}"\n', "b"),
    })
    objects = by_name(render(kluctl_env("dev"), root))
    assert objects["ConfigMap/a"]["data"] == {"v": "{{ not rendered }}"}
    assert objects["ConfigMap/keep"]["data"] == {"v": "dev"}
    assert objects["ConfigMap/b"]["data"] == {"v": "{{ also not }}"}


def test_generated_kustomization_lists_the_directorys_yaml_files_in_name_order(tmp_path: Path) -> None:
    root = project(tmp_path, """
        overrideNamespace: apps
        deployments:
          - path: app
          - path: tree
            recursive: true
        """, {
        "app/b.yaml": configmap("  v: b\n", "b"),
        "app/a.yml": configmap("  v: a\n", "a"),
        "app/notes.txt": "not a resource",
        "app/nested/ignored.yaml": configmap("  v: n\n", "nested"),
        "tree/z.yaml": configmap("  v: z\n", "z"),
        "tree/deeper/y.yaml": configmap("  v: y\n", "y"),
    })
    objects = render(kluctl_env("dev"), root)
    assert [o["metadata"]["name"] for o in objects] == ["a", "b", "y", "z"]
    assert {o["metadata"]["namespace"] for o in objects} == {"apps"}


def test_a_kustomization_namespace_wins_over_override_namespace_and_its_annotations_count(
        tmp_path: Path) -> None:
    root = project(tmp_path, """
        overrideNamespace: fallback
        deployments:
          - path: first
          - path: second
        """, {
        "first/kustomization.yaml": "namespace: own\nresources: [cm.yaml]\nmetadata:\n  annotations:\n"
                                    "    kluctl.io/barrier: 'true'\n    kluctl.io/wait-readiness: 'true'\n",
        "first/cm.yaml": configmap("  v: x\n", "first"),
        "second/cm.yaml": configmap("  v: y\n", "second"),
    })
    plan = render_plan(kluctl_env("dev"), root)
    assert [[o["metadata"]["namespace"] for o in p.objects] for p in plan.phases] == [["own"], ["fallback"]]
    assert [str(r) for r in plan.phases[0].wait] == ["ConfigMap/own/first"]


def test_a_library_project_sees_only_its_args_unless_vars_are_passed(tmp_path: Path) -> None:
    root = project(tmp_path, """
        vars:
          - values: {secret_of_parent: p}
        deployments:
          - include: lib
            args: {size: 3}
          - include: lib2
            passVars: true
        """, {
        "lib/.kluctl-library.yaml": "args:\n  - name: size\n  - name: colour\n    default: red\n",
        "lib/deployment.yaml": "deployments:\n  - path: app\n",
        "lib/app/cm.yaml": configmap('  v: "{{ args.size }} {{ args.colour }} {{ secret_of_parent is defined }}"\n',
                                     "lib"),
        "lib2/.kluctl-library.yaml": "args:\n  - name: size\n    default: 1\n",
        "lib2/deployment.yaml": "deployments:\n  - path: app\n",
        "lib2/app/cm.yaml": configmap('  v: "{{ args.size }} {{ secret_of_parent }}"\n', "lib2"),
    })
    objects = by_name(render(kluctl_env("dev"), root))
    assert objects["ConfigMap/lib"]["data"] == {"v": "3 red False"}
    assert objects["ConfigMap/lib2"]["data"] == {"v": "1 p"}


def test_only_render_items_render_for_others_and_deploy_nothing(tmp_path: Path) -> None:
    root = project(tmp_path, """
        deployments:
          - path: component
            onlyRender: true
          - path: app
        """, {
        "component/kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\n"
                                        "resources: [cm.yaml]\n",
        "component/cm.yaml": configmap('  v: "{{ args.environment }}"\n', "from-component"),
        "app/kustomization.yaml": "resources: [cm.yaml]\ncomponents: [../component]\n",
        "app/cm.yaml": configmap("  v: app\n", "app"),
    })
    plan = render_plan(kluctl_env("dev"), root)
    assert [o["metadata"]["name"] for o in plan.objects] == ["app", "from-component"]
    assert plan.phases[0].items == ("app",)


def test_update_dict_in_one_template_does_not_reach_the_next(tmp_path: Path) -> None:
    root = project(tmp_path, """
        vars:
          - values: {settings: {a: 1}}
        deployments:
          - path: app
        """, {
        "app/a.yaml": '{{ update_dict(settings, {"b": 2}) }}' + configmap('  v: "{{ settings }}"\n', "a"),
        "app/b.yaml": configmap('  v: "{{ settings }}"\n', "b"),
    })
    objects = by_name(render(kluctl_env("dev"), root))
    assert objects["ConfigMap/a"]["data"] == {"v": "{'a': 1, 'b': 2}"}
    assert objects["ConfigMap/b"]["data"] == {"v": "{'a': 1}"}
