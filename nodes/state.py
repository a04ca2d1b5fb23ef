"""The graph's state: plain, JSON-serializable data (kernels and services live outside it)."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict


def merge_usage(
    left: dict[str, dict[str, int]] | None, right: dict[str, dict[str, int]] | None
) -> dict[str, dict[str, int]]:
    """Add token counts per node: ``{"planner": {"input_tokens": 10, ...}, ...}``."""
    out = {node: dict(counts) for node, counts in (left or {}).items()}
    for node, counts in (right or {}).items():
        slot = out.setdefault(node, {})
        for key, value in counts.items():
            slot[key] = slot.get(key, 0) + int(value or 0)
    return out


class InputState(TypedDict):
    """What a caller gives: the task in plain words."""

    task: str


class OutputState(TypedDict, total=False):
    """What a caller gets back."""

    answer: str | None
    status: str
    error: str | None
    steps: list[dict[str, Any]]
    functions_created: list[str]
    functions_reused: list[str]
    usage: dict[str, dict[str, int]]
    report: list[dict[str, Any]]


class State(TypedDict, total=False):
    """Everything the nodes share during one task.

    ``steps`` holds one record per executed cell: instruction, code, status, observation, the
    library functions retrieved and called, the functions it defined. ``candidates`` are
    functions from successful cells, with the calls recorded to them (probes), for the
    librarian.
    """

    task: str
    task_key: str
    plan: list[str]
    instruction: str | None
    code: str | None
    hits: list[dict[str, Any]]
    attempts: int
    last_status: str | None
    failed_attempts: list[dict[str, Any]]
    steps: Annotated[list[dict[str, Any]], operator.add]
    candidates: Annotated[list[dict[str, Any]], operator.add]
    functions_reused: Annotated[list[str], operator.add]
    functions_created: list[str]
    proposed_answer: str | None
    answer: str | None
    status: str
    error: str | None
    usage: Annotated[dict[str, dict[str, int]], merge_usage]
    report: list[dict[str, Any]]
