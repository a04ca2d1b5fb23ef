"""Chat models per node: ChatOpenAI against OpenAI or any OpenAI-compatible server.

A node's model is ``models.<node>`` merged over ``models.default``, with the run's Context
able to override the model name. Clients are cached per resolved entry, so a run reuses
connections. A missing API key is a :class:`ConfigError` naming the variable to set.

``timeout`` bounds a whole model call, the client's retries included: every HTTP attempt of the
call gets only the time left (its connect/read/write timeouts are clamped to it), and an attempt
that would start after the deadline fails at once. A failing call ends in a
:class:`ModelEndpointError` whose one line names the node, the endpoint, the model and what
happened (HTTP status, a body that is not JSON or broke off, no reply within the timeout, a
refused connection).
"""

from __future__ import annotations

import contextvars
import functools
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from dynagraph.tools.config import StrictSettings
from dynagraph.tools.errors import ConfigError, EndpointError, causes
from dynagraph.tools.model_requests import plain_completions
from pydantic import Field

if TYPE_CHECKING:  # langchain (~0.35 s to import) loads when the first model is built
    from langchain_core.language_models import BaseChatModel

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
    timeout: float | None = Field(
        None, description="seconds one model call may take, the client's retries included"
    )
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
    # called by the agent proxy for the kernel's actions (tools/actions/proxy.py), not by a node
    vision: ModelSettings = Field(
        default_factory=ModelSettings,
        description="ask_image's model (image content parts); unset keys from models.default",
    )
    transcribe: ModelSettings = Field(
        default_factory=ModelSettings,
        description="read_file's audio transcription (/audio/transcriptions); off until "
        "model is set, other keys from models.default",
    )

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
                model = self._build(entry, key, node)
                self._cache[cache_key] = model
            return model

    def close(self) -> None:
        """Close the clients built so far (their pooled HTTP connections); a later call
        builds new ones."""
        with self._lock:
            models, self._cache = list(self._cache.values()), {}
        for model in models:
            client = getattr(model, "root_client", None)
            if client is not None:
                client.close()

    @staticmethod
    def _build(entry: ModelSettings, key: str, node: str = "") -> BaseChatModel:
        import openai

        kwargs: dict[str, Any] = {
            "model": entry.model,
            "api_key": key,
            "base_url": entry.base_url,
            "timeout": entry.timeout,
            "max_retries": 0,  # DeadlineChatOpenAI retries (entry.max_retries) within the deadline
            "stream_usage": True,
            "http_client": openai.DefaultHttpxClient(transport=_deadline_transport()),
        }
        if entry.temperature is not None:
            kwargs["temperature"] = entry.temperature
        if entry.max_tokens is not None:
            kwargs["max_tokens"] = entry.max_tokens
        model = _chat_class()(**kwargs)
        model._dg_entry, model._dg_node = entry, node
        plain = plain_completions(model.root_client)
        if plain is not None and model.client is not None:
            model.client = plain  # sends ChatOpenAI's body as built (tools/model_requests.py)
        return model


# -- one deadline per model call ------------------------------------------------------------------
#: (monotonic deadline, the call's timeout in seconds) of the model call running in this context
_DEADLINE: contextvars.ContextVar[tuple[float, float] | None] = contextvars.ContextVar(
    "dynagraph_model_deadline", default=None
)


@contextmanager
def call_deadline(seconds: float | None) -> Iterator[None]:
    """HTTP attempts made inside get only the time left of ``seconds`` (an enclosing deadline,
    if sooner, wins)."""
    if not seconds or seconds <= 0:
        yield
        return
    outer = _DEADLINE.get()
    deadline = time.monotonic() + seconds
    if outer is not None and outer[0] < deadline:
        deadline, seconds = outer
    token = _DEADLINE.set((deadline, seconds))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def _http_module() -> Any:
    """The HTTP library the openai client is built on (httpx, or its successor httpx2)."""
    import importlib

    import openai

    base = next(c for c in openai.DefaultHttpxClient.__mro__[1:] if c.__name__ == "Client")
    return importlib.import_module(base.__module__.split(".")[0])


@functools.cache
def _deadline_transport_class() -> type:
    import openai

    httpx = _http_module()

    class DeadlineTransport(httpx.HTTPTransport):
        """Clamps each attempt's timeouts to what is left of the call's deadline. Past the
        deadline it raises ``openai.APITimeoutError``, which the client propagates at once
        (an OpenAIError is never retried), so retries cannot stretch a call beyond it."""

        def handle_request(self, request: Any) -> Any:
            bound = _DEADLINE.get()
            if bound is None:
                return super().handle_request(request)
            deadline, _seconds = bound
            left = deadline - time.monotonic()
            if left <= 0:
                raise openai.APITimeoutError(request=request)
            given = request.extensions.get("timeout") or {}
            request.extensions["timeout"] = {
                k: left if given.get(k) is None else min(float(given[k]), left)
                for k in ("connect", "read", "write", "pool")
            }
            try:
                return super().handle_request(request)
            except httpx.TimeoutException as exc:
                if time.monotonic() >= deadline - 0.05:
                    raise openai.APITimeoutError(request=request) from exc
                raise

    return DeadlineTransport


def _deadline_transport() -> Any:
    return _deadline_transport_class()()


def import_chat_client() -> None:
    """Import the chat client's modules (openai, langchain-openai: most of a command's start)
    now, not inside the first model call: the CLI does it while its start is counted."""
    _deadline_transport_class()
    _chat_class()


@functools.cache
def _chat_class() -> type:
    from langchain_openai import ChatOpenAI

    class DeadlineChatOpenAI(ChatOpenAI):
        """ChatOpenAI whose every call runs under one deadline (``timeout``) and whose client
        errors become one-line :class:`ModelEndpointError`."""

        def _guarded(self, call: Any, *args: Any, **kwargs: Any) -> Any:
            """Attempts with backoff, as the openai client would make them, but all inside
            the call's deadline: a backoff never sleeps past it, and the last failure is the
            one reported."""
            entry = getattr(self, "_dg_entry", None)
            node = getattr(self, "_dg_node", "")
            seconds = entry.timeout if entry and entry.timeout else None
            retries = entry.max_retries if entry and entry.max_retries is not None else 2
            deadline = time.monotonic() + seconds if seconds else None
            attempt = 0
            while True:
                left = None if deadline is None else deadline - time.monotonic()
                try:
                    with call_deadline(left if left is None else max(left, 0.001)):
                        return call(*args, **kwargs)
                except ModelEndpointError:
                    raise
                except Exception as exc:
                    error = exc
                wait = _retry_wait(error, attempt)
                left = None if deadline is None else deadline - time.monotonic()
                if wait is None or attempt >= retries or (left is not None and left <= wait):
                    break
                time.sleep(wait)
                attempt += 1
            line = describe_endpoint_error(error, entry, node)
            if line is None:
                raise error
            if attempt:
                line += f" (after {attempt + 1} attempts)"
            raise ModelEndpointError(line) from error

        def _generate(self, *args: Any, **kwargs: Any) -> Any:
            return self._guarded(super()._generate, *args, **kwargs)

        def _stream(self, *args: Any, **kwargs: Any) -> Any:
            parent = super()._stream
            return iter(self._guarded(lambda: list(parent(*args, **kwargs))))

    return DeadlineChatOpenAI


def _retry_wait(exc: BaseException, attempt: int) -> float | None:
    """Seconds to wait before retrying after ``exc`` (the openai client's rules: 408, 409, 429,
    5xx and connection errors, ``x-should-retry`` and ``retry-after`` obeyed), or None."""
    import random

    import openai

    if isinstance(exc, openai.APITimeoutError):
        return None  # the deadline passed: nothing is left to retry in
    if isinstance(exc, openai.APIStatusError):
        headers = exc.response.headers if exc.response is not None else {}
        flag = headers.get("x-should-retry")
        if flag == "false" or (flag != "true" and exc.status_code not in (408, 409, 429)
                               and exc.status_code < 500):  # fmt: skip
            return None
        for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
            try:
                return max(float(headers.get(name, "")) * scale, 0.0)
            except ValueError:
                pass
    elif not isinstance(exc, openai.APIConnectionError):
        return None
    return min(0.5 * 2.0**attempt, 8.0) * (1 - 0.25 * random.random())


# -- one line per failure ------------------------------------------------------------------------
def describe_endpoint_error(
    exc: BaseException, entry: ModelSettings | None = None, node: str = ""
) -> str | None:
    """One line for a client error a user must act on, or None if it is not one of those."""
    try:
        import openai
    except ImportError:  # pragma: no cover
        return None
    where = (entry.base_url if entry and entry.base_url else None) or "the OpenAI API"
    model = entry.model if entry and entry.model else "?"
    who = f"the {node} model" if node else "the model"
    setting = f"models.{node or '*'}"
    head = f"{who} {model} at {where}"
    chain = list(causes(exc))
    if isinstance(exc, openai.APITimeoutError):
        seconds = entry.timeout if entry and entry.timeout else None
        within = f"within {seconds:g} s" if seconds else "in time"
        return (
            f"{head} sent no reply {within} ({setting}.timeout bounds each call, retries included)"
        )
    if isinstance(exc, openai.AuthenticationError):
        env = entry.api_key_env if entry else "the API key variable"
        return f"{head} refused the API key (HTTP 401): check {env}"
    if isinstance(exc, openai.NotFoundError):
        return f"{head}: the endpoint does not serve {model} (HTTP 404): check {setting}.model"
    if isinstance(exc, openai.APIStatusError):
        detail = " ".join(str(getattr(exc, "message", "") or "").split())
        detail = re.sub(r"^Error code: \d+\s*-\s*", "", detail)[:200]
        return f"{head} answered HTTP {exc.status_code}" + (f": {detail}" if detail else "")
    if isinstance(exc, openai.APIConnectionError):
        names = {type(c).__name__ for c in chain}
        if any(isinstance(c, ConnectionRefusedError) for c in chain) or any(
            type(c).__name__ == "ConnectError" and "refused" in str(c).lower() for c in chain
        ):
            return (
                f"cannot reach {head}: connection refused; check {setting}.base_url and that "
                "the server is up"
            )
        if names & {"RemoteProtocolError", "ReadError"}:
            return f"{head} broke off its reply: the body ended early (connection closed)"
        cause = next((c for c in chain[1:] if str(c)), None)
        why = f": {' '.join(str(cause).split())[:160]}" if cause else ""
        return f"cannot reach {head}{why}; check {setting}.base_url and that the server is up"
    if isinstance(exc, ValueError) and type(exc).__name__ == "JSONDecodeError":
        return f"{head} answered with a body that is not JSON ({exc})"
    return None
