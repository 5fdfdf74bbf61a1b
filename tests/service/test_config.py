"""shipline.yaml is validated at start: unknown keys and bad values fail with the key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from handlers.errors import ConfigError
from handlers.secrets import SecretRef
from service.config import load_config, parse_config

MINIMAL = {"receivers": [{"source": "github", "secret": {"env": "GH_SECRET"}}]}


def test_minimal_config_loads_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "shipline.yaml"
    path.write_text("receivers:\n  - source: github\n    secret: {env: GH_SECRET}\n")
    config = load_config(path)
    assert config.server.port == 8080
    assert config.receiver("github").secret == SecretRef(env="GH_SECRET")
    assert config.receiver("github", "other") is None


@pytest.mark.parametrize(("data", "path", "hint"), [
    ({"server": {"prot": 1}}, "server.prot", "unknown key"),
    ({"receivers": [{"source": "svn"}]}, "receivers.0.source", "unknown source 'svn'; use one of"),
    ({"repos": [{"name": "Bad Name", "url": "x"}]}, "repos.0.name", "pattern"),
    ({"repos": [{"name": "a", "url": "x", "images": [{"name": "r/a", "context": "../up"}]}]},
     "repos.0.images.0.context", "inside the repository"),
    ({"repos": [{"name": "a", "url": "x", "images": [{"name": "r/a", "tags": ["{nope}"]}]}]},
     "repos.0.images.0.tags", "unknown placeholder"),
    ({"environments": [{"name": "s", "git": {"url": "x"}, "drift": "ignore"}]}, "environments.0.drift", "correct"),
    ({"environments": [{"name": "s", "git": {"url": "x"}, "images": [{"image": "i", "policy": {
        "semver": ">=1", "pin": "1.0.0"}}]}]}, "environments.0.images.0.policy", "choose one"),
    ({"receivers": [{"source": "github", "secret": {"env": "A", "file": "/b"}}]}, "receivers.0.secret",
     "exactly one"),
    ({"receivers": [{"source": "github", "secret": "inline-value"}]}, "receivers.0.secret", "valid dictionary"),
])
def test_bad_config_names_the_key_path(data: dict, path: str, hint: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert f"  {path}" in str(err.value)
    assert hint in str(err.value)


def test_cross_references_are_checked() -> None:
    with pytest.raises(ConfigError, match="follows unknown 'nowhere'"):
        parse_config({"environments": [{"name": "p", "git": {"url": "x"}, "trigger": "follow",
                                        "follows": "nowhere"}]})
    with pytest.raises(ConfigError, match="duplicate entry in receivers"):
        parse_config({"receivers": [{"source": "github"}, {"source": "github"}]})


def test_secrets_are_resolved_late_and_never_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret_file = tmp_path / "s"
    secret_file.write_text("file-secret\n")
    monkeypatch.setenv("GH_SECRET", "env-secret")
    assert SecretRef(env="GH_SECRET").resolve() == "env-secret"
    assert SecretRef(file=secret_file).resolve() == "file-secret"
    config = parse_config({"receivers": [{"source": "github", "secret": {"file": str(secret_file)}}]})
    assert "file-secret" not in repr(config) and "file-secret" not in config.model_dump_json()
    monkeypatch.delenv("GH_SECRET")
    with pytest.raises(ConfigError, match="GH_SECRET is not set"):
        SecretRef(env="GH_SECRET").resolve()
    with pytest.raises(ConfigError, match="cannot be read"):
        SecretRef(file=tmp_path / "missing").resolve()


def test_missing_or_hostile_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config .* SHIPLINE_CONFIG"):
        load_config(tmp_path / "nope.yaml")
    bomb = tmp_path / "bomb.yaml"
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 8)]
    bomb.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="billion laughs"):
        load_config(bomb)
    not_yaml = tmp_path / "bad.yaml"
    not_yaml.write_text("receivers: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(not_yaml)
