"""Fixtures shared by every test: a loopback stand-in for the LLM and a hermetic environment."""

from __future__ import annotations

import gc
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import user_env
from tests.support.openai_stub import StubLLM
from tests.support.weaviate_server import weaviate_server  # noqa: F401  (a live server or a skip)

STUB_API_KEY = "sk-stub-not-a-secret"


@pytest.fixture(autouse=True)
def _collect_garbage_after_each_test() -> Iterator[None]:
    """Collect garbage after each test, so an unclosed socket or event loop is reported
    (``error::ResourceWarning`` in pyproject) at the test that leaked it, not at whichever
    later test the collector happens to run in."""
    yield
    gc.collect()


@pytest.fixture
def openai_stub() -> Iterator[StubLLM]:
    """A started StubLLM (an OpenAI-compatible server on 127.0.0.1), stopped after the test."""
    with StubLLM() as stub:
        yield stub


@pytest.fixture
def stub_env(
    openai_stub: StubLLM, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> dict[str, Any]:
    """Environment for code under test: its own DYNAGRAPH_HOME and a fake API key.

    OPENAI_BASE_URL is removed rather than set, so code that forgets to take the base URL from
    its config fails instead of silently reaching the stub. Returns the values a test needs to
    write a config: base_url, api_key, home, and the stub itself.
    """
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("DYNAGRAPH_HOME", str(home))
    monkeypatch.setenv("OPENAI_API_KEY", STUB_API_KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    return {
        "base_url": openai_stub.base_url,
        "api_key": STUB_API_KEY,
        "home": home,
        "stub": openai_stub,
    }


@pytest.fixture
def settings_for(stub_env: dict[str, Any], tmp_path: Path) -> Any:
    """``settings_for(**sections)``: Settings with every model at the stub, files under the
    test's home, and the given config sections merged in (tests/support/config.py)."""
    from dynagraph.graphs.settings import load_settings

    from tests.support.config import write_stub_config

    def make(**sections: Any) -> Any:
        path = write_stub_config(
            tmp_path / "config.yaml", stub_env["base_url"], stub_env["home"], **sections
        )
        return load_settings(path)

    return make


@pytest.fixture
def cli_env(stub_env: dict[str, Any], tmp_path: Path) -> dict[str, str]:
    """The environment of a ``dynagraph`` subprocess: the stub's key, the test's home, and a
    config pointing every model at the stub (DYNAGRAPH_CONFIG)."""
    from tests.support.config import write_stub_config

    env = user_env(OPENAI_API_KEY=stub_env["api_key"], DYNAGRAPH_HOME=str(stub_env["home"]))
    config = write_stub_config(tmp_path / "config.yaml", stub_env["base_url"], stub_env["home"])
    env["DYNAGRAPH_CONFIG"] = str(config)
    return env


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A TMPDIR short enough for the kernels' runtime folders to be made in it: under a long
    one (pytest's own ``tmp_path`` often is) they go to /tmp, and a check for leftovers in it
    could not fail."""
    folder = Path(tempfile.mkdtemp(prefix="dg-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
