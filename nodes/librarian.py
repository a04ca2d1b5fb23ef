"""The librarian: after the task, admits the functions of successful cells into the library.

The decisions live in tools/librarian/ (``admit``: the cascade of stages); the model they may
ask is nodes/librarian_model.py. This node frees the task's kernel, counts the task in the
library (pruning counts tasks) and stamps the library functions the task called, runs the
task's candidates through the cascade with one scratch kernel (started only if some candidate
needs it) and the librarian model (built only if some candidate needs it), and writes every
decision to the run's report and the library's log.
"""

from __future__ import annotations

from typing import Any

from dynagraph.nodes.context import Context
from dynagraph.nodes.events import emit
from dynagraph.nodes.librarian_model import ChatLibrarianModel
from dynagraph.nodes.services import NodeServices, kernel_key
from dynagraph.nodes.state import State
from dynagraph.tools.actions import action_names
from dynagraph.tools.librarian.candidate import Candidate, Origin, merge_task_candidates
from dynagraph.tools.librarian.cascade import admit
from dynagraph.tools.librarian.context import AdmissionContext, Decision
from dynagraph.tools.librarian.journal import log_entries
from dynagraph.tools.librarian.scratch import ScratchVerifier
from dynagraph.tools.models import resolve_model
from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

#: Decisions after which the function is in the library under the decision's name.
STORED_ACTIONS = ("added", "new_version", "supersedes")


class LibrarianNode:
    name = "librarian"

    def __init__(self, services: NodeServices) -> None:
        self.services = services

    def __call__(
        self, state: State, runtime: Runtime[Context], config: RunnableConfig
    ) -> dict[str, Any]:
        context = runtime.context or Context()
        key = kernel_key(state, config)
        self.services.kernels.release(key)  # the task's kernel is done: free it first
        candidates = merge_task_candidates(state.get("candidates") or [])
        usage: dict[str, int] = {}
        if not context.use_library:
            report = [
                {"name": c.name, "action": "skipped", "reason": "library off for this run"}
                for c in candidates
            ]
            created: list[str] = []
        else:
            try:
                decisions, usage = self.curate(state, candidates, context, key)
            finally:  # a scratch kernel the planner started ahead and no check claimed
                self.services.drop_scratch(self.services.workdir_for(key))
            report = [d.to_dict() for d in decisions]
            created = [d.name for d in decisions if d.action in STORED_ACTIONS]
        emit(runtime, config, {"node": "librarian", "decisions": report})
        status = state.get("status") or "failed"
        if status == "running":
            status = "failed"
        update: dict[str, Any] = {"report": report, "functions_created": created, "status": status}
        if usage:
            update["usage"] = {"librarian": usage}
        return update

    def curate(
        self, state: State, candidates: list[Candidate], context: Context, key: str
    ) -> tuple[list[Decision], dict[str, int]]:
        """Count the task, stamp the functions it reused, judge its candidates, log.

        Each candidate's writes and its log entries are committed together (``admit`` with a
        journal). A resumed task (its process died while this node ran) finds the decisions
        its thread already logged: it keeps their task index and does not judge those
        candidates again, so nothing it admitted is counted twice."""
        services = self.services
        library = services.library
        settings = services.settings
        logged = library.thread_decisions(key)  # a resumed task skips what it decided
        earlier = [_decision(e) for e in logged]
        resumed_index = next((e["task_index"] for e in logged if e.get("task_index")), None)
        task_index = resumed_index or library.next_task_index()
        reused = {n for n in state.get("functions_reused") or []}
        reused_ids = [r.id for n in sorted(reused) if (r := library.get_by_name(n)) is not None]
        library.mark_used(reused_ids, task_index)
        decided = {d.name for d in earlier}
        candidates = [c for c in candidates if c.name not in decided]
        if not candidates:
            return earlier, {}

        coder_model = resolve_model(settings.models, "coder", context.model_override("coder")).model
        origin = Origin(task=state.get("task", ""), thread=key, model=coder_model or "")
        model = ChatLibrarianModel(
            lambda: services.models.for_node("librarian", context.model_override("librarian")),
            retries=settings.agent.max_parse_retries,
        )
        verifier = ScratchVerifier(
            services.scratch_kernel,
            probe_timeout=settings.librarian.probe_timeout,
            cwd=services.workdir_for(key),
            release=services.release_scratch,
        )
        ctx = AdmissionContext(
            library,
            origin,
            settings.librarian,
            verifier=verifier,
            model=model,
            task_index=task_index,
            action_names=action_names(services.action_lines()),
        )

        def journal(found: list[Decision]) -> None:
            library.log_decisions(log_entries(found, origin, task_index))

        try:
            with services.admission_lock():  # concurrent librarians: see Services.admission_lock
                decisions = admit(candidates, ctx, journal=journal)
        finally:
            verifier.close()
        return [*earlier, *decisions], model.usage


def _decision(entry: dict[str, Any]) -> Decision:
    return Decision(
        name=str(entry["name"]),
        action=str(entry["action"]),
        record_id=entry.get("record_id"),
        reason=str(entry.get("reason") or ""),
        stage=str(entry.get("stage") or ""),
        target=entry.get("target"),
    )
