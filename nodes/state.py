"""The graph's state: plain, JSON-serializable data (kernels and services live outside it)."""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal, NotRequired, TypedDict

#: How a cell ended (tools.kernel ExecutionResult.status).
CellStatus = Literal["ok", "error", "timeout", "died"]
#: Where a task stands.
TaskStatus = Literal["running", "done", "failed", "error"]


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


class HitRow(TypedDict):
    """A library function shown to the coder for the current step."""

    id: str
    name: str
    summary: str  # ``name(signature) -> type: docstring``, as the coder sees it
    score: float


class FailedAttempt(TypedDict):
    """A cell of the current step that failed and will be retried by the coder."""

    code: str
    observation: str
    status: CellStatus
    restarted: NotRequired[bool]  # the kernel was restarted during this attempt


class StepRecord(TypedDict):
    """One executed step: what was asked, the cell that ran last, and what came of it."""

    instruction: str
    code: str
    status: CellStatus
    observation: str
    attempts: int
    retrieved: list[str]  # library functions shown to the coder
    reused: list[str]  # library functions the cell called
    defined: list[str]  # functions the cell defined (candidates for the librarian)
    restarted: bool  # the kernel was restarted during this step (any attempt): variables are gone
    files: list[str]
    seconds: float
    from_plan: NotRequired[bool]  # taken from the planner's plan without a planner turn


class CandidateEntry(TypedDict):
    """A function from a successful cell, with the calls recorded to it (probes).

    ``probes_only`` entries carry only new calls to a function an earlier step defined.
    """

    name: str
    probes: list[dict[str, Any]]
    code: NotRequired[str]
    signature: NotRequired[str]
    docstring: NotRequired[str]
    imports: NotRequired[list[str]]
    globals: NotRequired[list[str]]
    calls: NotRequired[list[str]]
    ast_hash: NotRequired[str]
    step: NotRequired[int]
    probes_only: NotRequired[bool]


class InputState(TypedDict):
    """What a caller gives: the task in plain words."""

    task: str


class OutputState(TypedDict, total=False):
    """What a caller gets back."""

    answer: str | None
    status: TaskStatus
    error: str | None
    steps: list[StepRecord]
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
    plan: list[str]  # the planner's steps after the current one (nodes/plan.py)
    followed: int  # planned steps taken in a row without the planner
    follow: bool  # the executor handed the plan's next step to the coder
    instruction: str | None
    code: str | None
    hits: list[HitRow]
    attempts: int
    retry: bool  # the executor's decision: the coder tries the step again
    failed_attempts: list[FailedAttempt]
    steps: Annotated[list[StepRecord], operator.add]
    candidates: Annotated[list[CandidateEntry], operator.add]
    functions_reused: Annotated[list[str], operator.add]
    functions_created: list[str]
    proposed_answer: str | None
    answer: str | None
    status: TaskStatus
    error: str | None
    usage: Annotated[dict[str, dict[str, int]], merge_usage]
    report: list[dict[str, Any]]
