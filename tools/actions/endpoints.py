"""The OpenAI-compatible endpoints the agent proxy calls for the kernel, and how it calls them.

Host side only (the kernel never sees these: they hold the names of key variables and read the
keys). An :class:`Endpoint` comes from a ``models`` entry (``models.vision`` over
``models.default``; ``models.transcribe`` only when its model is set); :func:`call_endpoint` POSTs
to it with the key from the agent's environment and turns every failure into one line that never
holds the key.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dynagraph.tools.actions._common import one_line

OPENAI_BASE_URL = "https://api.openai.com/v1"


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible model the proxy calls for the kernel (``models.vision`` and such)."""

    model: str
    base_url: str | None = None  # None: the OpenAI API
    api_key_env: str | None = "OPENAI_API_KEY"  # '' or None: the endpoint needs no key
    timeout: float = 120.0
    max_tokens: int | None = None
    temperature: float | None = None
    setting: str = "models.vision"  # named in error lines

    @property
    def url(self) -> str:
        return (self.base_url or OPENAI_BASE_URL).rstrip("/")

    @property
    def who(self) -> str:
        """How error lines name it: ``models.vision model gpt-4o-mini at https://...``."""
        return f"{self.setting} model {self.model} at {self.url}"

    @classmethod
    def from_entry(cls, entry: Any, setting: str) -> Endpoint | None:
        """From a tools.models ModelSettings (merged over the default); None without a model."""
        if entry is None or not getattr(entry, "model", None):
            return None
        return cls(
            model=str(entry.model),
            base_url=entry.base_url,
            api_key_env=entry.api_key_env,
            timeout=float(entry.timeout or 120.0),
            max_tokens=entry.max_tokens,
            temperature=entry.temperature,
            setting=setting,
        )


def endpoints_from_models(models: Any) -> tuple[Endpoint | None, Endpoint | None]:
    """(vision, transcription) from the ``models`` settings section.

    ``models.vision`` falls back to ``models.default`` key by key; transcription is off unless
    ``models.transcribe.model`` is set (its other keys fall back to the default's).
    """
    if models is None:
        return None, None
    default = models.default
    vision_entry = getattr(models, "vision", None)
    vision = vision_entry.merged_over(default) if vision_entry is not None else default
    transcribe_entry = getattr(models, "transcribe", None)
    transcribe = None
    if transcribe_entry is not None and transcribe_entry.model:
        transcribe = transcribe_entry.merged_over(default)
    return (
        Endpoint.from_entry(vision, "models.vision"),
        Endpoint.from_entry(transcribe, "models.transcribe"),
    )


def call_endpoint(
    endpoint: Endpoint,
    path: str,
    body: bytes,
    kind: str,
    *,
    environ: Mapping[str, str],
    user_agent: str = "dynagraph/0.1",
) -> dict[str, Any]:
    """POST ``body`` to ``<endpoint.url><path>`` with its key; the JSON reply or ``{"error"}``."""
    key = ""
    if endpoint.api_key_env:
        key = environ.get(endpoint.api_key_env, "")
        if not key:
            return {
                "error": f"{endpoint.who} needs an API key: set "
                f"{endpoint.api_key_env} for the agent process (or {endpoint.setting}"
                ".api_key_env)"
            }
    request = urllib.request.Request(endpoint.url + path, data=body, method="POST")
    request.add_header("Content-Type", kind)
    request.add_header("User-Agent", user_agent)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=endpoint.timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        detail = _error_detail(exc.read(2000))
        exc.close()
        line = f"{endpoint.who} answered HTTP {exc.code}" + (f": {detail}" if detail else "")
        return {"error": _redact(line, key)}
    except TimeoutError:
        return {"error": f"{endpoint.who} sent no reply within {endpoint.timeout:g} s"}
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        line = f"cannot reach {endpoint.who}: {one_line(reason, 160)}"
        return {"error": _redact(line, key)}
    try:
        data = json.loads(raw)
    except ValueError:
        return {"error": f"{endpoint.who} answered with a body that is not JSON"}
    return data if isinstance(data, dict) else {"error": "the reply is not a JSON object"}


def _error_detail(raw: bytes) -> str:
    """The message of an OpenAI-style error body, else its first characters."""
    text = raw.decode("utf-8", errors="replace")
    try:
        error = json.loads(text).get("error")
        text = error.get("message", "") if isinstance(error, dict) else str(error or "")
    except (ValueError, AttributeError):
        pass
    return one_line(text, 200)


def _redact(text: str, key: str) -> str:
    return text.replace(key, "***") if key else text
