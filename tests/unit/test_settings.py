"""Settings: YAML loading, precedence, model resolution, clear errors."""

from __future__ import annotations

import pytest
import yaml
from dynagraph.graphs.settings import (
    DEFAULT_CONFIG,
    ConfigError,
    Settings,
    config_path,
    dynagraph_home,
    expand_path,
    load_settings,
)
from dynagraph.tools.models import ModelFactory, resolve_model


def test_default_yaml_equals_builtin_defaults():
    data = yaml.safe_load(DEFAULT_CONFIG.read_text())
    assert Settings(**data).model_dump(exclude={"source"}) == Settings().model_dump(
        exclude={"source"}
    )


def test_precedence_explicit_then_env_then_default(tmp_path, monkeypatch):
    a = tmp_path / "a.yaml"
    a.write_text("agent: {max_steps: 3}\n")
    b = tmp_path / "b.yaml"
    b.write_text("agent: {max_steps: 4}\n")
    monkeypatch.setenv("DYNAGRAPH_CONFIG", str(b))
    assert load_settings(a).agent.max_steps == 3
    assert load_settings().agent.max_steps == 4
    monkeypatch.delenv("DYNAGRAPH_CONFIG")
    assert config_path() == DEFAULT_CONFIG


def test_a_shipped_config_is_found_by_name_from_any_folder(tmp_path, monkeypatch):
    """Installed in a project, configs/ is not under the user's folder: ``--config local-llm``
    (or ``local-llm.yaml``, or ``$DYNAGRAPH_CONFIG``) names the shipped file; a file of that
    name in the current folder comes first; a name that is neither says what there is."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DYNAGRAPH_CONFIG", raising=False)
    shipped = DEFAULT_CONFIG.parent / "local-llm.yaml"
    assert config_path("local-llm") == shipped
    assert config_path("local-llm.yaml") == shipped
    assert load_settings("local-llm").models.default.base_url.startswith("http://localhost")
    monkeypatch.setenv("DYNAGRAPH_CONFIG", "openai")
    assert config_path() == DEFAULT_CONFIG.parent / "openai.yaml"
    (tmp_path / "local-llm.yaml").write_text("agent: {max_steps: 2}\n")
    assert load_settings("local-llm.yaml").agent.max_steps == 2  # the user's own file
    with pytest.raises(ConfigError, match=r"does not exist \(give a file, or a shipped config: "):
        load_settings("no-such-preset")
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings("sub/local-llm.yaml")  # a path is a path, never a shipped name


def test_an_unreadable_config_is_a_config_error(tmp_path):
    """Bytes that are not UTF-8, or a folder given as the file: one ConfigError, no traceback."""
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"agent: {max_steps: 3}  # caf\xe9\n")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_settings(latin)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path)


def test_unknown_key_and_bad_value_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("agent: {max_stepz: 3}\n")
    with pytest.raises(ConfigError, match=r"agent.max_stepz"):
        load_settings(bad)
    bad.write_text("executor: {sandbox: docker}\n")
    with pytest.raises(ConfigError, match=r"executor.sandbox"):
        load_settings(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.yaml")
    bad.write_text("models: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad)


def test_paths_expand_home_and_vars(monkeypatch, tmp_path):
    monkeypatch.setenv("DYNAGRAPH_HOME", str(tmp_path))
    assert expand_path("${DYNAGRAPH_HOME}/lib.db") == tmp_path / "lib.db"
    monkeypatch.delenv("DYNAGRAPH_HOME")
    assert str(expand_path("${DYNAGRAPH_HOME}/x")).endswith(".dynagraph/x")
    with pytest.raises(ConfigError, match="NOT_SET_ANYWHERE"):
        expand_path("${NOT_SET_ANYWHERE}/x")


def test_relative_paths_and_home_are_made_absolute_against_the_current_folder(
    monkeypatch, tmp_path
):
    """A kernel starts in its task's folder and the sandbox binds absolute paths: a relative
    home or workdir must name the folder it named where the command was typed."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DYNAGRAPH_CONFIG", raising=False)
    monkeypatch.setenv("DYNAGRAPH_HOME", "relhome")
    assert dynagraph_home() == tmp_path / "relhome"
    assert expand_path("${DYNAGRAPH_HOME}/runs") == tmp_path / "relhome" / "runs"
    assert expand_path("work/../runs") == tmp_path / "runs"
    settings = load_settings(None)
    assert settings.path(settings.executor.workdir).is_absolute()


def test_node_model_merges_over_default_and_context_overrides(tmp_path):
    cfg = tmp_path / "m.yaml"
    cfg.write_text(
        "models:\n  default: {model: base, base_url: 'http://x/v1', temperature: 0.2}\n"
        "  coder: {model: big, temperature: 0.0}\n"
    )
    settings = load_settings(cfg)
    coder = resolve_model(settings.models, "coder")
    assert (coder.model, coder.base_url, coder.temperature) == ("big", "http://x/v1", 0.0)
    planner = resolve_model(settings.models, "planner", override="ctx-model")
    assert (planner.model, planner.temperature) == ("ctx-model", 0.2)
    with pytest.raises(ConfigError):
        settings.models.for_node("executor")


def test_missing_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("SOME_DYNAGRAPH_TEST_KEY", raising=False)
    settings = load_settings(None, **{"models.default.api_key_env": "SOME_DYNAGRAPH_TEST_KEY"})
    with pytest.raises(ConfigError, match="set SOME_DYNAGRAPH_TEST_KEY"):
        ModelFactory(settings.models).check("planner")
    local = load_settings(None, **{"models.default.api_key_env": ""})
    assert ModelFactory(local.models).check("coder").model == "gpt-4o-mini"


def test_every_shipped_config_loads():
    for path in sorted(DEFAULT_CONFIG.parent.glob("*.yaml")):
        assert isinstance(load_settings(path), Settings), path
