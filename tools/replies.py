"""Reading a structured answer out of a model's free text: the first JSON object in it.

Models wrap JSON in prose and ```json fences however they are told; every reply protocol that
asks for one object (the planner's, the librarian's) reads it the same way, so the tolerance is
written once. Errors are :class:`ReplyParseError`, whose message is written for the model to
act on (the agent's re-ask loop sends it back verbatim).
"""

from __future__ import annotations

import json
import re
from typing import Any

from dynagraph.tools.errors import DynagraphError

__all__ = ["FENCE", "ReplyParseError", "first_json_object", "json_object"]

#: A fenced block: group 1 the language tag, group 2 the body.
FENCE = re.compile(r"```([A-Za-z0-9_+-]*)[ \t]*\n(.*?)```", re.DOTALL)


class ReplyParseError(DynagraphError, ValueError):
    """A reply broke its protocol; the message is written for the model to act on."""


def first_json_object(text: str) -> Any:
    """The first JSON value starting at a ``{`` in a ```json (or untagged) fence, else in the
    whole text. Raises :class:`ReplyParseError` with the last decoding error."""
    chunks = [body for lang, body in FENCE.findall(text) if lang.lower() in ("", "json")]
    chunks.append(text)
    decoder = json.JSONDecoder()
    last_error = "no JSON object found"
    for chunk in chunks:
        start = chunk.find("{")
        while start != -1:
            try:
                obj, _ = decoder.raw_decode(chunk[start:])
                return obj
            except json.JSONDecodeError as exc:
                last_error = f"invalid JSON: {exc}"
            start = chunk.find("{", start + 1)
    raise ReplyParseError(last_error)


def json_object(text: str, shape: str) -> dict[str, Any]:
    """The reply's first JSON object; ``shape`` (the protocol in one line) is added to any
    error so the model is told what to send."""
    try:
        data = first_json_object(text)
    except ReplyParseError as exc:
        raise ReplyParseError(f"{exc}; {shape}") from None
    if not isinstance(data, dict):
        raise ReplyParseError(shape)
    return data
