"""The planner: reads the task and the observations, decides the next step or the answer.

It never writes code. Its reply protocol is one JSON object (nodes/protocol.py). After
``agent.max_steps`` executed steps it is told to answer now; a reply that still asks for a step
is then a protocol error, re-asked like any other.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Protocol

from dynagraph.nodes import prompts
from dynagraph.nodes.coder import task_search_part
from dynagraph.nodes.context import Context
from dynagraph.nodes.events import emit
from dynagraph.nodes.history import render_history
from dynagraph.nodes.plan import remaining_plan
from dynagraph.nodes.protocol import (
    PlannerDecision,
    ProtocolError,
    ReplyParseError,
    ask,
    parse_planner_reply,
)
from dynagraph.nodes.services import NodeServices, kernel_key
from dynagraph.nodes.speculation import Speculations
from dynagraph.nodes.state import State
from dynagraph.tools.actions._common import ActionError
from dynagraph.tools.actions.media import image_data_url
from dynagraph.tools.errors import InputError
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

#: At most this many images of the last step are shown to the planner (agent.show_images).
MAX_SHOWN_IMAGES = 4


def check_task(state: State) -> None:
    """The graph's input must hold the task as text: from a LangGraph server (Studio) any JSON
    comes in, and ``{"task": 5}`` failed deep in the embedder with an AttributeError, ``{}``
    with a KeyError, each after the task's kernel had been started."""
    problem = task_problem(state.get("task"))
    if problem is not None:
        raise InputError(f'the input needs "task", the task as text ({problem})')


def task_problem(task: object) -> str | None:
    """What makes ``task`` unusable as a task, or None: not text, blank, or text that is not
    UTF-8 (a command line with bytes of another encoding: the checkpoint write failed on it,
    with a traceback, after the planner's model call)."""
    if task is None:
        return "got none"
    if not isinstance(task, str):
        return f"got a {type(task).__name__}"
    if not task.strip():
        return "got an empty text"
    try:
        task.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"it is not UTF-8 text: {task[max(exc.start - 10, 0) : exc.start]!r} is followed by an undecodable byte"
    return None


class Speculator(Protocol):
    """The coder's side of speculation (nodes/speculation.py, CoderNode)."""

    speculations: Speculations

    def speculate(self, state: State, context: Context, config: RunnableConfig) -> None: ...


class PlannerNode:
    name = "planner"

    def __init__(self, services: NodeServices, *, speculator: Speculator | None = None) -> None:
        self.services = services
        #: starts the coder on the plan's next step while this node's model call is out
        self.speculator = speculator

    def speculate(self, state: State, context: Context, config: RunnableConfig) -> None:
        """Have the coder write the plan's next step beside this turn (agent.speculate) when
        the planner is likely to keep to it: a plan is left, the last step went well, no
        answer is proposed and more steps may run."""
        steps = state.get("steps") or []
        if (
            self.speculator is None
            or not context.speculation(self.services.settings.agent)
            or not state.get("plan")
            or not steps
            or steps[-1].get("status") != "ok"
            or state.get("proposed_answer") is not None
            or len(steps) >= context.step_limit(self.services.settings.agent)
        ):
            return
        self.speculator.speculate(state, context, config)

    def start_kernels_ahead(self, state: State, config: RunnableConfig, context: Context) -> None:
        """Work starts while the model thinks: before the first step, the task's kernel and
        the embedding of the task's part of the coder's query (library.query_embedding: parted,
        so the first search embeds only its instruction); once the task has functions to
        verify, the librarian's scratch kernel (the texts it searches and stores them by are
        sent to be embedded by the executor, as each cell starts: ExecutorNode.embed_views_ahead)."""
        key = kernel_key(state, config)
        if not state.get("steps"):
            self.services.kernels.prestart(key)
            part = task_search_part(self.services.settings.library, state["task"])
            if context.use_library and part:
                self.services.prepare_search_ahead(part)
        candidates = state.get("candidates") or []
        if context.use_library and candidates:
            self.services.prestart_scratch(self.services.workdir_for(key))

    def __call__(
        self, state: State, runtime: Runtime[Context], config: RunnableConfig
    ) -> dict[str, Any]:
        check_task(state)  # before a kernel or an embedding starts for it
        settings = self.services.settings
        context = runtime.context or Context()
        max_steps = context.step_limit(settings.agent)
        steps = state.get("steps", [])
        must_answer = len(steps) >= max_steps
        limit_note = (
            f"You have used all {max_steps} steps: give the final answer now."
            if must_answer
            else f"Steps left: {max_steps - len(steps)}."
        )
        follow_limit = context.follow_limit(settings.agent)
        if follow_limit and not must_answer:
            limit_note += (
                f"\nUp to {follow_limit} steps of your plan may run one after another before you "
                "see their observations: write each plan step as a full instruction."
            )
        if state.get("proposed_answer") is not None:
            limit_note += (
                f"\nThe last cell called final_answer({state['proposed_answer']!r}): "
                "confirm it as the final answer if it answers the task."
            )
        user_text = prompts.render(
            "planner_user",
            task=state["task"],
            history=render_history(steps, settings.executor.observation_chars),
            limit_note=limit_note,
        )
        images = self.latest_images(state, config) if settings.agent.show_images else []
        messages = [
            SystemMessage(content=prompts.render("planner_system")),
            HumanMessage(
                content=[{"type": "text", "text": user_text}, *images] if images else user_text
            ),
        ]

        def parse(text: str) -> PlannerDecision:
            decision = parse_planner_reply(text)
            if must_answer and decision.final_answer is None:
                raise ReplyParseError("the step limit is reached: reply with `final_answer`")
            return decision

        model = self.services.models.for_node("planner", context.model_override("planner"))
        self.start_kernels_ahead(state, config, context)  # after the client's first-use imports
        self.speculate(state, context, config)
        try:
            decision, usage = ask(
                model, messages, parse, retries=settings.agent.max_parse_retries, node="planner"
            )
        except ProtocolError as exc:  # the failed calls' tokens are counted too
            failed = {"status": "failed", "error": str(exc), "task_key": _task_key(state)}
            return {
                **failed,
                "usage": {"planner": exc.usage, **self.end_speculation(state, config)},
            }
        emit(
            runtime,
            config,
            {
                "node": "planner",
                "step": len(steps) + 1,
                "thought": decision.thought,
                "next_step": decision.next_step,
                "final_answer": decision.final_answer,
            },
        )
        update: dict[str, Any] = {
            "usage": {"planner": usage},
            "plan": remaining_plan(decision.plan, decision.next_step),
            "followed": 0,
        }
        update["task_key"] = _task_key(state)
        if decision.final_answer is not None:
            update.update(answer=decision.final_answer, status="done", instruction=None)
            update["usage"].update(self.end_speculation(state, config))
        else:
            update.update(
                instruction=decision.next_step,
                status="running",
                attempts=0,
                failed_attempts=[],
                proposed_answer=None,
            )
        return update

    def end_speculation(self, state: State, config: RunnableConfig) -> dict[str, Any]:
        """The task ends here: a speculative coder call is not needed; the tokens of those
        that ended are counted (under ``coder``)."""
        if self.speculator is None:
            return {}
        wasted = self.speculator.speculations.close(kernel_key(state, config))
        return {"coder": wasted} if wasted else {}

    def latest_images(self, state: State, config: RunnableConfig | None) -> list[dict[str, Any]]:
        """Content parts showing the images the last step displayed (saved in its kernel's
        working directory), each as a downscaled base64 data URL after a caption."""
        steps = state.get("steps") or []
        names = (steps[-1].get("files") or [])[:MAX_SHOWN_IMAGES] if steps else []
        if not names:
            return []
        key = kernel_key(state, config)
        session = self.services.kernels.peek(key)
        folder = Path(session.workdir) if session is not None else self.services.workdir_for(key)
        parts: list[dict[str, Any]] = []
        for name in names:
            path = Path(name) if Path(name).is_absolute() else folder / name
            try:
                url = image_data_url(path.read_bytes())
            except (OSError, ValueError, ActionError):
                continue  # gone or unreadable: the observation still names the file
            parts.append({"type": "text", "text": f"Image {name}, displayed by step {len(steps)}:"})
            parts.append({"type": "image_url", "image_url": {"url": url}})
        return parts


def _task_key(state: State) -> str:
    return state.get("task_key") or str(uuid.uuid4())
