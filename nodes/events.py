"""Progress events the nodes emit, and how they read.

Each node emits one event per call (:func:`emit`): on LangGraph's ``custom`` stream, for a
caller streaming with ``stream_mode="custom"`` (LangGraph Studio, a server's client), and to the
listener ``run_task(on_event=...)`` put in the run's config, called in the node's own thread.
``run_task`` does not stream ``custom``: with that mode LangGraph runs every node in a worker
thread, which costs ~0.2 ms a hop and keeps Ctrl-C away from a running cell (bench/README.md
13g). The command line shows the events with :func:`render_event`, so the shape is defined
once, next to the nodes that produce it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from dynagraph.nodes.state import CellStatus

if TYPE_CHECKING:  # the command line renders events without loading LangGraph
    from langchain_core.runnables import RunnableConfig
    from langgraph.runtime import Runtime

#: ``config["configurable"]`` key of the callable that takes every event (run_task's
#: ``on_event``). Not a field of the Context: Studio shows the Context as a form.
LISTENER_KEY = "dynagraph_listener"


def emit(runtime: Runtime[Any], config: RunnableConfig, event: dict[str, Any]) -> None:
    """Send one node event to the ``custom`` stream and to the run's listener, if any."""
    if runtime.stream_writer:
        runtime.stream_writer(event)
    listener: Callable[[dict[str, Any]], None] | None = (config.get("configurable") or {}).get(
        LISTENER_KEY
    )
    if listener is not None:
        listener(event)


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
    speculative: bool  # written while the planner decided (agent.speculate), then used


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
        ahead = " (written while the planner decided)" if event.get("speculative") else ""
        lines = [f"[coder    step {step}.{event.get('attempt')}] library hits: {found}{ahead}"]
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
