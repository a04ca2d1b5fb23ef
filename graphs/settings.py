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
from dynagraph.nodes.settings import AgentSettings
from dynagraph.tools.actions.config import ActionsConfig
from dynagraph.tools.config import StrictSettings as _Strict
from dynagraph.tools.embeddings import EmbeddingSettings
from dynagraph.tools.errors import ConfigError
from dynagraph.tools.kernel.settings import ExecutorSettings
from dynagraph.tools.librarian.settings import LibrarianSettings
from dynagraph.tools.library.settings import LibrarySettings
from dynagraph.tools.models import ModelSettings, ModelsSettings
from pydantic import Field, ValidationError

__all__ = ["ConfigError", "ModelSettings", "ModelsSettings", "Settings", "load_settings"]

REPO_ROOT = Path(__file__).resolve().parents[1]
#: the shipped configs: the checkout's configs/, installed as the data package dynagraph.configs
#: (the same path from this file in both: <root>/graphs/ beside <root>/configs/)
SHIPPED_CONFIGS = REPO_ROOT / "configs"
DEFAULT_CONFIG = SHIPPED_CONFIGS / "default.yaml"


class Settings(_Strict):
    models: ModelsSettings = ModelsSettings()
    embeddings: EmbeddingSettings = EmbeddingSettings()
    library: LibrarySettings = LibrarySettings()
    executor: ExecutorSettings = ExecutorSettings()
    agent: AgentSettings = AgentSettings()
    librarian: LibrarianSettings = LibrarianSettings()
    actions: ActionsConfig = Field(default_factory=ActionsConfig, description="see tools/actions")
    checkpoint_path: str = "${DYNAGRAPH_HOME}/checkpoints.db"
    checkpoint_durability: Literal["async", "sync", "exit"] = Field(
        "async",
        description="when run_task saves a task's state (LangGraph's durability): 'async' after "
        "every node, written beside the next one (a task resumes with its thread id even after "
        "its process was killed); 'sync' the same, written before the next node starts; 'exit' "
        "only when the run ends, however it ends (done, failed, Ctrl-C, SIGTERM, an error): "
        "1-3 ms a step less with a zero-latency model, but a killed process's task starts over",
    )
    source: str | None = Field(None, description="the file these settings came from")

    def path(self, value: str) -> Path:
        """Expand ``~`` and ``${VAR}`` (``DYNAGRAPH_HOME`` defaults to ``~/.dynagraph``)."""
        return expand_path(value)


def dynagraph_home() -> Path:
    """``$DYNAGRAPH_HOME`` (default ``~/.dynagraph``), absolute: see :func:`expand_path`."""
    return _absolute(Path(os.environ.get("DYNAGRAPH_HOME") or "~/.dynagraph"))


def _absolute(path: Path) -> Path:
    """``path`` with ``~`` expanded, made absolute against the current directory now: a
    relative home or workdir must name the same folder in a kernel started elsewhere (its
    working directory is its task's folder) and in the sandbox's bind mounts."""
    return Path(os.path.abspath(path.expanduser()))


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_path(value: str) -> Path:
    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "DYNAGRAPH_HOME":
            return str(dynagraph_home())
        if name not in os.environ:
            raise ConfigError(f"path {value!r} uses ${{{name}}}, which is not set")
        return os.environ[name]

    return _absolute(Path(_VAR.sub(sub, value)))


def shipped_configs() -> list[str]:
    """The names of the configs shipped with dynagraph (``local-llm`` for local-llm.yaml)."""
    return sorted(p.stem for p in SHIPPED_CONFIGS.glob("*.yaml"))


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """Which config file applies (None: the built-in defaults). A file path, or the name of a
    shipped config (``local-llm``, ``openai.yaml``) when no such file is here: installed in
    a project, the shipped configs are not under its folder."""
    chosen = explicit or os.environ.get("DYNAGRAPH_CONFIG")
    if not chosen:
        return DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None
    path = Path(chosen)
    if not path.exists() and path.name == str(chosen):  # a bare name: a shipped config?
        shipped = SHIPPED_CONFIGS / (path.name if path.suffix else f"{path.name}.yaml")
        if shipped.is_file():
            return shipped
    return path


def load_settings(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Load settings; ``overrides`` are dotted keys, e.g. ``{"agent.max_steps": 3}``."""
    chosen = config_path(path)
    data: dict[str, Any] = {}
    if chosen is not None:
        if not chosen.exists():
            names = ", ".join(shipped_configs())
            raise ConfigError(
                f"config file {chosen} does not exist (give a file, or a shipped config: {names})"
            )
        try:
            data = yaml.safe_load(chosen.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            where = _yaml_problem(exc)
            raise ConfigError(f"config file {chosen} is not valid YAML{where}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"config file {chosen} is not UTF-8 text (byte {exc.start}); save it as UTF-8"
            ) from exc
        except OSError as exc:  # a folder, no permission
            raise ConfigError(f"cannot read config file {chosen}: {exc.strerror or exc}") from exc
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


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """Where and what, for a YAML error's one line: " at line L, column C: PROBLEM" (1-based,
    from the error's problem mark, else its context mark); without a mark, ": " and the
    error's first line."""
    for mark, what in (
        (getattr(exc, "problem_mark", None), getattr(exc, "problem", None)),
        (getattr(exc, "context_mark", None), getattr(exc, "context", None)),
    ):
        if mark is not None and what:
            return f" at line {mark.line + 1}, column {mark.column + 1}: {what}"
    lines = str(exc).strip().splitlines()
    return f": {lines[0] if lines else type(exc).__name__}"


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
