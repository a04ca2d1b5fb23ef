"""Chat models per node: ChatOpenAI against OpenAI or any OpenAI-compatible server.

A node's model is ``models.<node>`` merged over ``models.default``, with the run's Context
able to override the model name. Clients are cached per resolved entry, so a run reuses
connections. A missing API key is a :class:`ConfigError` naming the variable to set.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from langchain_core.language_models import BaseChatModel

from pydantic import Field

from dynagraph.tools.config import StrictSettings
from dynagraph.tools.errors import ConfigError, EndpointError

NODES_WITH_MODELS: tuple[str, ...] = ("planner", "coder", "librarian")


class ModelSettings(StrictSettings):
    """One chat model entry. Unset fields fall back to ``models.default``."""

    model: str | None = Field(None, description="model name sent to the endpoint")
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint; None = OpenAI")
    api_key_env: str | None = Field(
        None, description="environment variable holding the API key; '' = endpoint needs none"
    )
    temperature: float | None = None
    max_tokens: int | None = None
    timeout: float | None = Field(None, description="seconds per request")
    max_retries: int | None = Field(None, description="client retries on 429/5xx/connection")

    def merged_over(self, base: ModelSettings) -> ModelSettings:
        """This entry with its unset fields taken from ``base``."""
        data = base.model_dump()
        data.update({k: v for k, v in self.model_dump().items() if v is not None})
        return ModelSettings(**data)


class ModelsSettings(StrictSettings):
    default: ModelSettings = ModelSettings(
        model="gpt-4o-mini",
        base_url=None,
        api_key_env="OPENAI_API_KEY",
        temperature=0.0,
        max_tokens=None,
        timeout=120.0,
        max_retries=2,
    )
    planner: ModelSettings = ModelSettings()
    coder: ModelSettings = ModelSettings()
    librarian: ModelSettings = ModelSettings()

    def for_node(self, node: str) -> ModelSettings:
        if node not in NODES_WITH_MODELS:
            raise ConfigError(f"no model entry for node {node!r}; nodes: {NODES_WITH_MODELS}")
        return getattr(self, node).merged_over(self.default)



class ModelEndpointError(EndpointError):
    """The model endpoint cannot be used (unreachable, refused the key); one line to act on."""


def resolve_model(models: ModelsSettings, node: str, override: str | None = None) -> ModelSettings:
    entry = models.for_node(node)
    if override:
        entry = entry.model_copy(update={"model": override})
    if not entry.model:
        raise ConfigError(f"set models.{node}.model or models.default.model")
    return entry


def api_key_for(entry: ModelSettings, node: str) -> str:
    """The key from the environment; endpoints with ``api_key_env: ''`` get a placeholder."""
    if not entry.api_key_env:
        return "not-needed"
    key = os.environ.get(entry.api_key_env, "")
    if not key:
        raise ConfigError(
            f"set {entry.api_key_env} (API key for model {entry.model} used by the {node}), "
            f"or point models.{node}.api_key_env at the variable that holds it"
        )
    return key


class ModelFactory:
    """Builds and caches one chat model per (node, resolved settings)."""

    def __init__(self, models: ModelsSettings) -> None:
        self._models = models
        self._cache: dict[tuple[Any, ...], BaseChatModel] = {}
        self._lock = threading.Lock()

    def check(self, node: str, override: str | None = None) -> ModelSettings:
        """Resolve a node's entry and check its key, without building a client."""
        entry = resolve_model(self._models, node, override)
        api_key_for(entry, node)
        return entry

    def for_node(self, node: str, override: str | None = None) -> BaseChatModel:
        entry = resolve_model(self._models, node, override)
        key = api_key_for(entry, node)
        cache_key = (node, *sorted(entry.model_dump().items()), key)
        with self._lock:
            model = self._cache.get(cache_key)
            if model is None:
                model = self._build(entry, key)
                self._cache[cache_key] = model
            return model

    @staticmethod
    def _build(entry: ModelSettings, key: str) -> BaseChatModel:
        from langchain_openai import ChatOpenAI

        kwargs: dict[str, Any] = {
            "model": entry.model,
            "api_key": key,
            "base_url": entry.base_url,
            "timeout": entry.timeout,
            "max_retries": entry.max_retries if entry.max_retries is not None else 2,
            "stream_usage": True,
        }
        if entry.temperature is not None:
            kwargs["temperature"] = entry.temperature
        if entry.max_tokens is not None:
            kwargs["max_tokens"] = entry.max_tokens
        return ChatOpenAI(**kwargs)


def describe_endpoint_error(exc: BaseException, entry: ModelSettings | None = None) -> str | None:
    """One line for a client error a user must act on, or None if it is not one of those."""
    try:
        import openai
    except ImportError:  # pragma: no cover
        return None
    where = (entry.base_url if entry and entry.base_url else None) or "the OpenAI API"
    if isinstance(exc, openai.APIConnectionError):
        return f"cannot reach the model endpoint at {where}: check models.*.base_url and that the server is up"
    if isinstance(exc, openai.AuthenticationError):
        env = entry.api_key_env if entry else "the API key variable"
        return f"the model endpoint at {where} refused the API key: check {env}"
    if isinstance(exc, openai.NotFoundError):
        name = entry.model if entry else "the model"
        return f"the model endpoint at {where} does not serve {name}: check models.*.model"
    return None
