"""YAML bombs in the config, in manifests and in an environment's vars files are refused with a
clear error before they expand: billion laughs (nested aliases) and one huge anchor aliased
many times. Shared fixture files only, never network input, so this is about a malicious commit."""

from __future__ import annotations

from pathlib import Path

import pytest

from handlers.errors import ConfigError
from handlers.manifests import ImageUpdate, scan
from handlers.settings import EnvironmentConfig, GitLocation, RenderConfig
from handlers.sync.render import RenderError, render
from service.config import load_config


def laughs() -> str:
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 10) + "]" for i in range(8)]
    return "\n".join(lines) + "\n"


def huge_anchor() -> str:
    """A 2,000-item anchor aliased 1,000 times: 2 million nodes from a 30 kB file."""
    big = "big: &big [" + ", ".join(["x"] * 2000) + "]\n"
    return big + "copies:\n" + "".join("  - *big\n" for _ in range(1000))


BOMBS = {"billion laughs": laughs, "huge anchor": huge_anchor}


@pytest.mark.parametrize("bomb", sorted(BOMBS))
def test_config_bomb_is_refused(tmp_path: Path, bomb: str) -> None:
    path = tmp_path / "shipline.yaml"
    path.write_text(BOMBS[bomb]())
    with pytest.raises(ConfigError, match="refused") as caught:
        load_config(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("bomb", sorted(BOMBS))
@pytest.mark.parametrize("where", ["manifest", "vars file"])
def test_manifest_and_vars_bombs_are_refused_at_render(tmp_path: Path, bomb: str, where: str) -> None:
    (tmp_path / "deploy").mkdir()
    (tmp_path / "config").mkdir()
    if where == "manifest":
        (tmp_path / "deploy" / "bomb.yaml").write_text(BOMBS[bomb]())
        env = EnvironmentConfig(name="e", git=GitLocation(url="x", path="deploy"))
    else:
        (tmp_path / "deploy" / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
        (tmp_path / "config" / "e.yaml").write_text(BOMBS[bomb]())
        env = EnvironmentConfig(name="e", git=GitLocation(url="x", path="deploy"),
                                render=RenderConfig(mode="jinja2", vars=["config/e.yaml"]))
    with pytest.raises(RenderError, match="refused"):
        render(env, tmp_path)


@pytest.mark.parametrize("bomb", sorted(BOMBS))
def test_bump_scan_refuses_a_bomb_next_to_a_marker(tmp_path: Path, bomb: str) -> None:
    (tmp_path / "vars.yaml").write_text(BOMBS[bomb]() + "image:\n  version: 1.0.0 # STAGING_IMAGE_TAG\n")
    found = scan(tmp_path, [ImageUpdate("registry.example.com/app", "1.1.0")], ["STAGING_IMAGE_TAG"])
    assert not found.targets
    assert any("refused" in w for w in found.warnings), found.warnings


def test_a_key_given_twice_is_refused_with_its_line() -> None:
    from handlers.yamlsafe import load_yaml_all

    with pytest.raises(ConfigError, match=r"m.yaml: line 5: duplicate key 'greeting'"):
        load_yaml_all("apiVersion: v1\nkind: ConfigMap\ndata:\n  greeting: a\n  greeting: b\n", origin="m.yaml")
    merged = load_yaml_all("base: &b {x: 1}\nuse:\n  <<: *b\n  y: 2\n")  # merge keys stay legal
    assert merged == [{"base": {"x": 1}, "use": {"x": 1, "y": 2}}]
