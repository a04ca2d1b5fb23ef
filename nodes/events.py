"""Progress events the nodes emit on LangGraph's ``custom`` stream, and how they read.

Each node writes one event per call through ``runtime.stream_writer``; the command line (and any
caller streaming with ``stream_mode="custom"``) shows them with :func:`render_event`, so the
shape is defined once, next to the nodes that produce it.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from dynagraph.nodes.state import CellStatus


class PlannerEvent(TypedDict):
    node: Literal["planner"]
    step: int
    thought: str
    next_step: str | None
    final_answer: str | None


class CoderEvent(TypedDict):
    node: Literal["coder"]
    step: int
    attempt: int
    retrieved: list[str]
    code: str


class ExecutorEvent(TypedDict):
    node: Literal["executor"]
    step: int
    attempt: int
    status: CellStatus
    observation: str  # the first few hundred characters
    retry: bool
    restarted: bool
    next_step: str | None  # the plan's next step, taken without the planner (agent.follow_plan)


class LibrarianEvent(TypedDict):
    node: Literal["librarian"]
    decisions: list[dict[str, Any]]  # name, action, reason per candidate


StreamEvent = PlannerEvent | CoderEvent | ExecutorEvent | LibrarianEvent


def render_event(event: StreamEvent | dict[str, Any]) -> list[str]:
    """The progress lines a person reads for one event (``run`` prints them on stderr)."""
    node, step = event.get("node", "?"), event.get("step", "")
    if node == "planner":
        if event.get("final_answer") is not None:
            return [f"[planner  step {step}] answer: {event['final_answer']}"]
        return [f"[planner  step {step}] next: {event.get('next_step')}"]
    if node == "coder":
        found = ", ".join(event.get("retrieved") or []) or "none"
        lines = [f"[coder    step {step}.{event.get('attempt')}] library hits: {found}"]
        return lines + [f"    {line}" for line in (event.get("code") or "").rstrip().splitlines()]
    if node == "executor":
        status = str(event.get("status"))
        if event.get("restarted"):
            status += " (the kernel was restarted: variables from earlier steps are gone)"
        lines = [f"[executor step {step}.{event.get('attempt')}] {status}"]
        observation = (event.get("observation") or "").strip()
        if observation:
            lines.append(f"    {observation.replace(chr(10), chr(10) + '    ')}")
        if event.get("next_step"):
            lines.append(f"[plan     step {int(step) + 1}] next: {event['next_step']}")
        return lines
    if node == "librarian":
        return [
            f"[librarian] {d.get('name')}: {d.get('action')} ({d.get('reason')})"
            for d in event.get("decisions") or []
        ]
    return []
