"""The executor: runs the coder's cell in the task's kernel, under limits, and observes.

Before the cell, the library functions the coder was shown and the library functions they
call are defined in the task's kernel (each once per kernel, again after a restart; a step's
new ones in one cell, each run on its own so one that fails does not stop the others): by
:meth:`ExecutorNode.define_ahead` while the coder's model call is out when the kernel is up,
else by the node itself. A cell that runs in a kernel other than the one that ran the task's
earlier cells (a resumed task) or in one restarted since is told its variables are gone. After a
successful cell it records the top-level functions the cell defined, with the calls made to
them (probes), as candidates for the librarian, and counts a use of every library function
the cell called. After a successful step it may hand the planner's next planned step straight
to the coder (``agent.follow_plan``, nodes/plan.py).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from dynagraph.nodes.context import Context
from dynagraph.nodes.events import emit
from dynagraph.nodes.plan import follow_plan_update
from dynagraph.nodes.services import NodeServices, kernel_key
from dynagraph.nodes.state import State
from dynagraph.tools import codeparse
from dynagraph.tools.actions import parse_final_answer, strip_final_answer
from dynagraph.tools.background import in_background
from dynagraph.tools.kernel import NAMESPACE_LOST_NOTE, KernelSession, definitions, probes
from dynagraph.tools.librarian.candidate import Candidate
from dynagraph.tools.library import FunctionRecord
from dynagraph.tools.packages import missing_module_note
from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

log = logging.getLogger(__name__)

#: The most functions of one cell whose texts are sent to be embedded before it runs.
MAX_VIEWS_AHEAD = 16

#: Library functions now defined in a kernel ({name: record id}) and notes on failures.
Defined = tuple[dict[str, str], list[str]]


@dataclass
class _Kernel:
    """What the executor knows of one kernel session."""

    restarts: int  # the session's restart count that ``defined`` is true for
    defined: dict[str, str] = field(default_factory=dict)  # library function name -> record id
    helper: bool = False  # a definition cell installed kernel_side/define.py's helper


@dataclass
class _Ahead:
    """Definitions made by :meth:`ExecutorNode.define_ahead` while the coder's call was out
    (kept by session, weakly: not the session itself, which would keep its own entry alive)."""

    record_ids: list[str]
    restarts_before: int
    restarts_after: int
    outcome: Defined


class ExecutorNode:
    name = "executor"

    def __init__(self, services: NodeServices) -> None:
        self.services = services
        self._kernels: weakref.WeakKeyDictionary[KernelSession, _Kernel] = (
            weakref.WeakKeyDictionary()
        )
        # definitions under way, by kernel: an entry the executor never takes (the coder's call
        # failed after its search) goes with its session
        self._ahead: weakref.WeakKeyDictionary[KernelSession, Future[_Ahead]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    # -- kernel preparation ---------------------------------------------------------------------
    def session_for(self, key: str) -> KernelSession:
        """The task's kernel: the one the planner started ahead, else started here."""
        return self.services.kernels.peek(key) or self.services.kernels.get(key)

    def _known(self, session: KernelSession) -> _Kernel:
        """What this node knows of ``session``; its definitions are forgotten once the session
        has restarted since they were made (a new kernel holds none of them)."""
        with self._lock:
            known = self._kernels.get(session)
            if known is None:
                known = self._kernels[session] = _Kernel(session.restarts)
            elif known.restarts != session.restarts:
                known.defined.clear()
                known.helper = False
                known.restarts = session.restarts
            return known

    def define_ahead(self, key: str, record_ids: list[str]) -> None:
        """Define a step's library hits in its kernel in the background, while the coder's
        model call is out; the executor then takes the outcome instead of a round trip. Only
        into a kernel the task already has: this thread never starts one (the task may end
        before the executor runs, and nothing would release it)."""
        session = self.services.kernels.peek(key)
        if not record_ids or session is None:
            return

        def define() -> _Ahead | None:  # None: the executor defines them itself
            before = session.restarts
            try:
                outcome = self.define_library_functions(session, record_ids)
            except Exception as exc:  # not kept: its traceback would hold the session
                log.debug("definitions ahead failed: %s", exc)
                return None
            return _Ahead(record_ids, before, session.restarts, outcome)

        with self._lock:
            self._ahead[session] = in_background(define, "dynagraph-define-ahead")

    def defined_for_step(
        self, session: KernelSession, record_ids: list[str]
    ) -> tuple[Defined, int]:
        """The step's hits defined, and the session's restart count before the step used it:
        taken from :meth:`define_ahead` when it defined these ids in this session and the
        kernel has not restarted since (waited for), else defined now."""
        with self._lock:
            pending = self._ahead.pop(session, None)
        try:
            ahead = pending.result() if pending is not None else None
        except Exception:
            ahead = None
        if ahead is None or ahead.record_ids != record_ids:
            before = session.restarts
            return self.define_library_functions(session, record_ids), before
        if session.restarts != ahead.restarts_after:  # the kernel restarted since: again
            return self.define_library_functions(session, record_ids), ahead.restarts_before
        return ahead.outcome, ahead.restarts_before

    def define_library_functions(self, session: KernelSession, record_ids: list[str]) -> Defined:
        """Define records (dependencies first) not yet in the kernel.

        Returns every library function now defined ({name: id}) and notes on failures. A kernel
        that died while idle is restarted by the definitions' own cell, and what was defined in
        the old one is forgotten; one that restarts after the cell gets the definitions again.
        """
        library = self.services.library
        notes: list[str] = []
        ordered: list[FunctionRecord] = []
        seen: set[str] = set()

        def visit(record: FunctionRecord | None, depth: int = 0) -> None:
            if record is None or record.id in seen or depth > 20:
                return
            seen.add(record.id)
            for dep in record.depends_on:
                visit(library.get_by_name(dep), depth + 1)
            ordered.append(record)

        for rid in record_ids:
            visit(library.get(rid))
        for _ in range(3):
            known = self._known(session)
            if known.defined and not session.is_alive():  # died while idle: restarted next
                known.defined.clear()
                known.helper = False
            todo = [r for r in ordered if known.defined.get(r.name) != r.id]
            if not todo:
                break
            restarts = session.restarts
            # one cell for all, each source run in a namespace of its own (definitions.py);
            # the helper's source only in the kernel's first one (again after a %reset)
            result = definitions.run_definitions(
                session,
                [(r.name, r.kernel_source(), r.depends_on) for r in todo],
                helper=known.helper,
                timeout=30 + 5 * len(todo),
                output_limit=1024 * 1024,
            )
            failed = definitions.failures(result, [r.name for r in todo])
            if session.restarts != restarts:
                if result.status in ("died", "timeout"):
                    continue  # the kernel restarted after the cell: define into the new one
                known = self._known(session)  # restarted before it: the cell ran in the new one
            known.helper = known.helper or result.ok()
            for record in todo:
                if record.name in failed:
                    notes.append(
                        f"library function {record.name} could not be defined: "
                        f"{failed[record.name]}"
                    )
                else:
                    known.defined[record.name] = record.id
            break
        return dict(self._known(session).defined), notes

    def context_sources(self, state: State, library_names: dict[str, str]) -> Iterator[str]:
        """What the kernel ran before this cell, for resolving the names the cell's functions
        use (docs/architecture.md, "Names a cell's function uses"): the imports and classes of
        the library functions defined in it (bound where the name was free), then the task's
        earlier cells and attempts. A library function's other module-level names are its own,
        not the cell's (kernel_side/define.py). Lazy: a cell that defines no function never
        reads them."""
        for record_id in library_names.values():
            record = self.services.library.get(record_id)
            if record is not None:
                yield from record.imports
                yield from (g for g in record.globals if codeparse.class_names(g))
        yield from (s.get("code") or "" for s in state.get("steps") or [])
        yield from (a.get("code") or "" for a in state.get("failed_attempts") or [])

    def embed_views_ahead(self, state: State, code: str) -> None:
        """Send the texts the librarian will search and store this cell's functions by to be
        embedded while the cell runs (on the first step, while its kernel starts): each
        function's doc view, then the task (a stored function's origin-task view). Sent after
        the cell, with a model that answers at once, they were still being embedded when the
        librarian needed them (bench/README 13l). A cell that fails has cost their embedding:
        at most MAX_VIEWS_AHEAD functions a cell are sent (the librarian embeds any others)."""
        try:  # a hint: code that ast cannot unparse (too deep) or encode must not stop the cell
            views = codeparse.doc_views(code)[:MAX_VIEWS_AHEAD]
        except Exception as exc:  # noqa: BLE001 - RecursionError, UnicodeEncodeError, ...
            log.debug("no texts embedded ahead for this cell: %r", exc)
            return
        task = (state.get("task") or "").strip()
        if views:
            self.services.embed_ahead([*views, task] if task else views)

    # -- the node -------------------------------------------------------------------------------
    def __call__(
        self, state: State, runtime: Runtime[Context], config: RunnableConfig
    ) -> dict[str, Any]:
        settings = self.services.settings
        context = runtime.context or Context()
        key = kernel_key(state, config)
        code = state.get("code") or ""
        if context.use_library:
            self.embed_views_ahead(state, code)
        session = self.session_for(key)
        hit_ids = [h["id"] for h in state.get("hits") or []]
        (library_names, notes), restarts_before = self.defined_for_step(session, hit_ids)
        # the task ran cells before, but not in this kernel: it was resumed in a new process
        # (or its kernel was replaced); what earlier steps defined is gone
        earlier_cells = bool(state.get("steps") or state.get("failed_attempts"))
        resumed = earlier_cells and session.cells_run == 0
        if resumed:
            notes.append(f"[note] this task was resumed in a new kernel: {NAMESPACE_LOST_NOTE}")
        elif session.restarts > restarts_before:  # while its definitions ran: before the cell
            notes.append(f"[note] the kernel had stopped and was restarted: {NAMESPACE_LOST_NOTE}")
        result, (recorded, calls) = probes.execute_with_probes(
            session, code, settings.executor.timeout
        )

        # a cell that defines its own function under a library name calls its own, not ours
        own = set(codeparse.function_names(code))
        called_library = [
            name
            for name in library_names
            if name not in own and calls.get(name, {}).get("calls", 0) > 0
        ]
        for name in called_library:
            self.services.library.record_use(
                library_names[name], success=result.ok() and not calls[name].get("errors")
            )

        proposed = parse_final_answer(result.stdout) if result.ok() else None
        observation = strip_final_answer(result.to_observation(settings.executor.observation_chars))
        if notes:
            observation = "\n".join(notes) + "\n" + observation
        if result.files:  # the images themselves are never in the text
            observation += (
                f"\n[note] ask_image({result.files[0]!r}, question) asks the vision model "
                "what a saved image shows"
            )
        if proposed is not None:
            observation += f"\nfinal_answer({proposed!r}) was called."
        install = missing_module_note(
            result.error_name, result.error_value, network=settings.executor.network
        )
        if install:
            observation += f"\n{install}"
        attempts = state.get("attempts", 0) + 1
        update: dict[str, Any] = {"attempts": attempts}
        # any restart of this step's kernel, on this attempt or an earlier one, loses variables
        restarted = bool(resumed or result.restarted or session.restarts > restarts_before)
        step_restarted = restarted or any(
            a.get("restarted") for a in state.get("failed_attempts") or []
        )

        if result.ok():
            defined = codeparse.extract_functions(
                code, known_names=library_names, context=self.context_sources(state, library_names)
            )
            step = len(state.get("steps", [])) + 1
            update["candidates"] = [
                Candidate.from_function(fn, recorded.get(fn.name, []), step).to_entry()
                for fn in defined
            ]
            defined_names = {fn.name for fn in defined}
            before = {c["name"] for c in state.get("candidates") or []}
            update["candidates"] += [
                {"name": name, "probes": calls_made, "probes_only": True}
                for name, calls_made in recorded.items()
                if name in before and name not in defined_names and name not in library_names
            ]
            update["functions_reused"] = called_library
            update["proposed_answer"] = proposed
        retry = not result.ok() and attempts <= settings.agent.max_code_retries
        if retry:
            update["failed_attempts"] = [
                *(state.get("failed_attempts") or []),
                {
                    "code": code,
                    "observation": observation,
                    "status": result.status,
                    "restarted": restarted,
                },
            ]
        else:
            update["steps"] = [
                {
                    "instruction": state.get("instruction") or state.get("task", ""),
                    "code": code,
                    "status": result.status,
                    "observation": observation,
                    "attempts": attempts,
                    "retrieved": [h["name"] for h in state.get("hits") or []],
                    "reused": called_library,
                    "defined": [
                        c["name"] for c in update.get("candidates", []) if not c.get("probes_only")
                    ],
                    "restarted": step_restarted,
                    "files": list(result.files),
                    "seconds": round(result.duration_s, 3),
                    "from_plan": bool(state.get("followed")),
                }
            ]
        update["retry"] = retry
        update["follow"] = False
        if not retry:
            following = follow_plan_update(
                state,
                step_ok=result.ok(),
                proposed_answer=proposed,
                steps_done=len(state.get("steps") or []) + 1,
                max_steps=context.step_limit(settings.agent),
                follow_limit=context.follow_limit(settings.agent),
            )
            update.update(following or {})
        emit(
            runtime,
            config,
            {
                "node": "executor",
                "step": len(state.get("steps", [])) + 1,
                "attempt": attempts,
                "status": result.status,
                "observation": observation[:400],
                "retry": retry,
                "restarted": restarted,
                "next_step": update["instruction"] if update["follow"] else None,
            },
        )
        return update
