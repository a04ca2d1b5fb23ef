"""The graph: planner -> coder -> executor -> (coder | planner) ... -> librarian -> END.

The executor sends the coder back for a retry of the step, or on to the next step of the
planner's plan when ``agent.follow_plan`` allows it (nodes/plan.py); else the planner decides.

``build_graph(settings)`` wires the four nodes to one set of services. ``graph`` is the same
graph compiled without a checkpointer, for LangGraph Studio / ``langgraph dev`` (the server
brings its own); scripts use :func:`graphs.run.run_task`, which compiles with SqliteSaver.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from dynagraph.graphs.services import Services
from dynagraph.graphs.settings import Settings, load_settings
from dynagraph.nodes.coder import CoderNode
from dynagraph.nodes.context import Context
from dynagraph.nodes.executor import ExecutorNode
from dynagraph.nodes.librarian import LibrarianNode
from dynagraph.nodes.planner import PlannerNode
from dynagraph.nodes.services import kernel_key
from dynagraph.nodes.state import InputState, OutputState, State
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.errors import GraphBubbleUp
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime


def after_planner(state: State) -> Literal["coder", "librarian"]:
    return "librarian" if state.get("status") in ("done", "failed") else "coder"


def after_coder(state: State) -> Literal["executor", "librarian"]:
    return "librarian" if state.get("status") == "failed" else "executor"


def after_executor(state: State) -> Literal["coder", "planner"]:
    """The executor decided: the coder tries the step again (``retry``) or takes the plan's next
    step (``follow``, agent.follow_plan), or the planner goes on."""
    return "coder" if state.get("retry") or state.get("follow") else "planner"


class ReleasingOnError:
    """A node that frees its task's kernels when it raises. The librarian frees them when a
    task ends, and ``run_task`` in its ``finally``; a run that ends in an error or a cancel
    under a LangGraph server (Studio) never reaches either, and kept its kernel (started ahead
    by the planner, up to ``executor.memory_limit_mb`` each) until the server stopped (an
    attack). A resumed thread gets a new kernel, as after any stop."""

    def __init__(self, node: Callable[..., dict[str, Any]], services: Services) -> None:
        self.node = node
        self.services = services

    def __call__(
        self, state: State, runtime: Runtime[Context], config: RunnableConfig
    ) -> dict[str, Any]:
        try:
            return self.node(state, runtime, config)
        except GraphBubbleUp:  # LangGraph's own control flow (an interrupt), not an error
            raise
        except BaseException:
            key = kernel_key(state, config)
            self.services.kernels.release(key)
            self.services.drop_scratch(self.services.workdir_for(key))
            raise


def build_graph(
    settings: Settings | None = None,
    *,
    services: Services | None = None,
    checkpointer: BaseCheckpointSaver | None = None,
) -> CompiledStateGraph:
    """Compile the agent graph. Services are created from settings unless given."""
    settings = settings or (services.settings if services else load_settings())
    services = services or Services(settings)
    builder = StateGraph(
        State, context_schema=Context, input_schema=InputState, output_schema=OutputState
    )
    executor = ExecutorNode(services)
    coder = CoderNode(services, define_ahead=executor.define_ahead)
    builder.add_node("planner", ReleasingOnError(PlannerNode(services, speculator=coder), services))
    builder.add_node("coder", ReleasingOnError(coder, services))
    builder.add_node("executor", ReleasingOnError(executor, services))
    builder.add_node("librarian", LibrarianNode(services))
    builder.add_edge(START, "planner")
    builder.add_conditional_edges("planner", after_planner)
    builder.add_conditional_edges("coder", after_coder)
    builder.add_conditional_edges("executor", after_executor)
    builder.add_edge("librarian", END)
    compiled = builder.compile(checkpointer=checkpointer, name="dynagraph")
    compiled.services = services  # type: ignore[attr-defined]  # for callers that close them
    return compiled


def make_graph() -> CompiledStateGraph:
    """The graph with settings from DYNAGRAPH_CONFIG or configs/default.yaml."""
    return build_graph(load_settings())


graph = make_graph()
