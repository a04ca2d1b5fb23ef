"""Reply protocols of the model-driven nodes, and the re-ask loop for malformed replies.

Documented for people writing replay or stub models in docs/protocols.md. A reply that does
not follow its protocol is sent back to the model with the parse error, up to
``agent.max_parse_retries`` times; then the task fails with a :class:`ProtocolError`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from dynagraph.nodes.history import clip
from dynagraph.tools.errors import TaskFailed
from dynagraph.tools.replies import FENCE, ReplyParseError, json_object
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

T = TypeVar("T")


#: How much of a malformed reply a re-ask quotes back to the model (head and tail).
REASK_QUOTE_CHARS = 400


class ProtocolError(TaskFailed):
    """A node's model kept breaking the reply protocol after every re-ask.

    ``usage`` holds the tokens of every call made, so the failed calls are counted too."""

    def __init__(self, message: str, usage: dict[str, int] | None = None) -> None:
        super().__init__(message)
        self.usage = dict(usage or {})


@dataclass
class PlannerDecision:
    thought: str
    plan: list[str]
    next_step: str | None
    final_answer: str | None


def parse_planner_reply(text: str) -> PlannerDecision:
    """One JSON object with ``next_step`` or ``final_answer`` (fences and prose tolerated)."""
    shape = (
        'reply with one JSON object: {"thought": ..., "plan": [...], "next_step": ...} '
        'or {"thought": ..., "final_answer": ...}'
    )
    data = json_object(text, shape)
    has_next = data.get("next_step") not in (None, "")
    has_final = "final_answer" in data and data["final_answer"] is not None
    if has_next == has_final:
        raise ReplyParseError(
            "the JSON object must have exactly one of `next_step` and `final_answer`"
        )
    plan = data.get("plan") or []
    if not isinstance(plan, list):
        raise ReplyParseError("`plan` must be a list of strings")
    final = data.get("final_answer")
    return PlannerDecision(
        thought=str(data.get("thought", "")),
        # a step is a sentence: numbers, objects and blanks in a plan are not steps to follow
        plan=[p.strip() for p in plan if isinstance(p, str) and p.strip()],
        next_step=str(data["next_step"]) if has_next else None,
        final_answer=_answer_text(final) if has_final else None,
    )


def _answer_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def parse_coder_reply(text: str) -> str:
    """The code of the reply's ```python fenced block (exactly one expected; first one wins)."""
    blocks = [body for lang, body in FENCE.findall(text) if lang.lower() in ("python", "py")]
    if not blocks:
        blocks = [body for lang, body in FENCE.findall(text) if lang == ""]
    if not blocks:
        raise ReplyParseError("reply with one ```python fenced code block containing the cell")
    code = blocks[0].strip("\n")
    if not code.strip():
        raise ReplyParseError("the ```python block is empty: write the code of the cell")
    return code + "\n"


def usage_of(message: BaseMessage) -> dict[str, int]:
    meta = getattr(message, "usage_metadata", None) or {}
    return {
        "input_tokens": int(meta.get("input_tokens", 0) or 0),
        "output_tokens": int(meta.get("output_tokens", 0) or 0),
        "total_tokens": int(meta.get("total_tokens", 0) or 0),
        "calls": 1,
    }


def add_usage(total: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    return {k: total.get(k, 0) + more.get(k, 0) for k in set(total) | set(more)}


def ask(
    model: BaseChatModel,
    messages: list[BaseMessage],
    parse: Callable[[str], T],
    *,
    retries: int,
    node: str,
) -> tuple[T, dict[str, int]]:
    """Invoke ``model`` and parse its reply, re-asking with the parse error on failure.

    A re-ask is the original messages plus the last bad reply, clipped to
    :data:`REASK_QUOTE_CHARS`, and the parse error: its size does not grow with the bad reply
    nor with the number of re-asks. Returns (parsed, token usage summed over every call); a
    :class:`ProtocolError` carries the usage of the calls made.
    """
    usage: dict[str, int] = {}
    history = list(messages)
    last_error = ""
    for _ in range(retries + 1):
        reply = model.invoke(history)
        usage = add_usage(usage, usage_of(reply))
        text = reply.content if isinstance(reply.content, str) else _flatten(reply.content)
        try:
            return parse(text), usage
        except ReplyParseError as exc:
            last_error = clip(str(exc), REASK_QUOTE_CHARS)
            history = [
                *messages,
                AIMessage(content=clip(text, REASK_QUOTE_CHARS)),
                HumanMessage(
                    content=f"Your reply could not be used: {last_error}. "
                    "Reply again, following the format exactly."
                ),
            ]
    raise ProtocolError(
        f"the {node} model broke its reply protocol {retries + 1} times; last error: "
        f"{' '.join(last_error.split())[:300]}",
        usage,
    )


def _flatten(content: list[Any]) -> str:
    parts = []
    for item in content:
        if isinstance(item, str):
            parts.append(item)
        elif isinstance(item, dict) and item.get("type") == "text":
            parts.append(str(item.get("text", "")))
    return "".join(parts)
