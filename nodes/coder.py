"""The coder: searches the library for the step first, then writes one cell of Python.

The library hits and the initial actions are shown as ``name(signature): docstring`` lines;
the executor defines the hits in the kernel, in the background while this node's model call
is out (``define_ahead``), and before the cell at the latest. On a retry the failed
cell and its traceback are shown. The reply protocol is one ```python block.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from dynagraph.nodes import prompts
from dynagraph.nodes.context import Context
from dynagraph.nodes.events import emit
from dynagraph.nodes.history import RESTART_NOTE, clip, render_history
from dynagraph.nodes.protocol import ProtocolError, add_usage, ask, parse_coder_reply
from dynagraph.nodes.readahead import Readahead
from dynagraph.nodes.services import NodeServices, kernel_key
from dynagraph.nodes.speculation import Cell, Speculations
from dynagraph.nodes.state import HitRow, State
from dynagraph.tools.actions import action_names
from dynagraph.tools.embeddings import PartedQuery
from dynagraph.tools.library import LibraryError, SearchHit
from dynagraph.tools.library.integrity import taken_name
from dynagraph.tools.library.settings import LibrarySettings
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

log = logging.getLogger(__name__)


def search_text(library: LibrarySettings, instruction: str, task: str) -> str:
    """The step's search text: the instruction, then the task (library.query_embedding: one
    text, or parts embedded apart with the task's vector cached for the whole task)."""
    if library.query_embedding == "parted":
        return PartedQuery(instruction, task)
    return f"{instruction}\n{task}"


def task_search_part(library: LibrarySettings, task: str) -> str | None:
    """The part of every step's search text that stays the same all task long, embedded on
    its own (parted), or None when the shape has no such part (joined)."""
    return PartedQuery(task) if library.query_embedding == "parted" else None


class CoderNode:
    name = "coder"

    def __init__(
        self,
        services: NodeServices,
        *,
        define_ahead: Callable[[str, list[str]], None] | None = None,
    ) -> None:
        self.services = services
        #: called with (kernel key, record ids) right after a search: the executor defines the
        #: step's hits in the kernel while this node's model call is out
        self.define_ahead = define_ahead
        #: speculative calls started by the planner node (agent.speculate)
        self.speculations = Speculations()
        #: how many planned steps each task has embedded ahead (prepare_next)
        self.readahead = Readahead()

    @functools.cached_property
    def actions(self) -> frozenset[str]:
        """The initial actions' names: a stored function named like one (or like a builtin) is
        never a hit, since defining it would replace the action in the task's kernel."""
        return action_names(self.services.action_lines())

    def query(self, instruction: str, task: str) -> str:
        """The step's search text (:func:`search_text` under this graph's settings)."""
        return search_text(self.services.settings.library, instruction, task)

    def search(self, query: str, use_library: bool, record: bool = True) -> list[SearchHit]:
        """Library hits for the step (before any code is written); ``record``: count them as
        retrieved now (a speculative search counts them only once its cell is used)."""
        if not use_library:
            return []
        lib_settings = self.services.settings.library
        library = self.services.library
        actions = self.actions
        hits = [
            hit
            for hit in library.search(query, k=lib_settings.top_k, alpha=lib_settings.alpha)
            if hit.score >= lib_settings.min_score and not taken_name(hit.record.name, actions)
        ]
        if hits and record:
            library.record_retrieved([h.record.id for h in hits])
        return hits

    def hit_rows(
        self, instruction: str, task: str, use_library: bool, record: bool = True
    ) -> list[HitRow]:
        """The step's library hits as the state keeps them (:class:`HitRow`)."""
        hits = self.search(self.query(instruction, task), use_library, record)
        return [
            {
                "id": h.record.id,
                "name": h.record.name,
                "summary": h.record.summary_line(),
                "score": round(h.score, 4),
            }
            for h in hits
        ]

    def prepare_next(self, state: State, use_library: bool, key: str, instruction: str) -> None:
        """Have the library embed the search texts of the plan's next steps now, in the
        background: the next step (the planner's usual next choice, the next one for sure under
        agent.follow_plan) then finds its query vector computed, or being computed, while
        this step's model call and cell ran. How many steps: task ``key``'s read-ahead window
        (nodes/readahead.py), grown while the planner keeps to its plan (``instruction``, the
        step written now, was one embedded ahead)."""
        upcoming = state.get("plan") or []
        if not (use_library and upcoming):
            return
        steps = self.readahead.steps(key, instruction, upcoming)
        try:  # a hint: the next step's own search reports what is wrong, if it still is
            self.services.library.prepare_search(*(self.query(s, state["task"]) for s in steps))
        except LibraryError as exc:
            log.debug("the next steps' queries were not embedded ahead: %s", exc)

    def __call__(
        self, state: State, runtime: Runtime[Context], config: RunnableConfig
    ) -> dict[str, Any]:
        context = runtime.context or Context()
        instruction = state.get("instruction") or state["task"]
        attempts = state.get("attempts", 0)
        key = kernel_key(state, config)
        kept = bool(attempts) and state.get("hits") is not None  # a retry keeps its functions
        speculated = None if attempts else self.speculations.take(key, instruction)
        if speculated is not None:
            code, hit_rows, usage = speculated
            if hit_rows:
                self.services.library.record_retrieved([row["id"] for row in hit_rows])
        elif kept:
            hit_rows = state["hits"]
        else:
            hit_rows = self.hit_rows(instruction, state["task"], context.use_library)
        if not kept:
            if hit_rows and self.define_ahead is not None:
                self.define_ahead(key, [row["id"] for row in hit_rows])
            self.prepare_next(state, context.use_library, key, instruction)
        wasted = self.speculations.settle(key)  # speculative calls of this task not used
        if speculated is None:
            try:
                code, usage = self.write(state, instruction, hit_rows, context)
            except ProtocolError as exc:
                return {
                    "status": "failed",
                    "error": str(exc),
                    "code": None,
                    "usage": {"coder": add_usage(exc.usage, wasted)},
                }
        emit(
            runtime,
            config,
            {
                "node": "coder",
                "step": len(state.get("steps", [])) + 1,
                "attempt": attempts + 1,
                "retrieved": [row["name"] for row in hit_rows],
                "code": code,
                "speculative": speculated is not None,
            },
        )
        return {"code": code, "hits": hit_rows, "usage": {"coder": add_usage(usage, wasted)}}

    def write(
        self, state: State, instruction: str, hit_rows: list[HitRow], context: Context
    ) -> tuple[str, dict[str, int]]:
        """Ask the coder model for the step's cell: (code, token usage). Raises
        :class:`ProtocolError` when its replies keep breaking the protocol."""
        settings = self.services.settings
        function_lines = [row["summary"] for row in hit_rows]
        function_lines += self.services.action_lines()
        retry = ""
        failed = state.get("failed_attempts") or []
        if failed:
            last = failed[-1]
            limit = settings.executor.observation_chars
            restarted = any(a.get("restarted") for a in failed)
            retry = (
                f"\nYour previous cell for this step failed (attempt {len(failed)}):\n"
                f"```python\n{clip(last['code'].rstrip(), limit)}\n```\n"
                f"Observation:\n{clip(last['observation'], limit)}\n"
                + (
                    f"Note: {RESTART_NOTE}: define again what the cell needs.\n"
                    if restarted
                    else ""
                )
                + "Fix the cause and write the whole cell again."
            )
        messages = [
            SystemMessage(
                content=prompts.render(
                    "coder_system",
                    functions="\n".join(f"- {line}" for line in function_lines) or "(none)",
                )
            ),
            HumanMessage(
                content=prompts.render(
                    "coder_user",
                    task=state["task"],
                    history=render_history(
                        state.get("steps", []),
                        settings.executor.observation_chars,
                        # the planner read the others: the steps since its last turn
                        # (agent.follow_plan: the followed ones too) are news to it
                        unread=state.get("followed", 0) or 1,
                    ),
                    instruction=instruction,
                    retry=retry,
                )
            ),
        ]
        model = self.services.models.for_node("coder", context.model_override("coder"))
        return ask(
            model,
            messages,
            parse_coder_reply,
            retries=settings.agent.max_parse_retries,
            node="coder",
        )

    def speculate(self, state: State, context: Context, config: RunnableConfig) -> None:
        """Start writing the plan's next step now, while the planner decides (nodes/speculation.py):
        the coder then sees what it would see after a planner turn that keeps to the plan."""
        upcoming = state.get("plan") or []
        if not upcoming:
            return
        instruction = upcoming[0]
        # the state as the planner's turn leaves it for the coder: a fresh step, nothing followed
        view: State = {**state, "attempts": 0, "failed_attempts": [], "followed": 0}

        def work() -> Cell:
            rows = self.hit_rows(instruction, state["task"], context.use_library, record=False)
            code, usage = self.write(view, instruction, rows, context)
            return code, rows, usage

        self.speculations.start(kernel_key(state, config), instruction, work)
