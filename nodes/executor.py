"""The executor: runs the coder's cell in the task's kernel, under limits, and observes.

Before the cell it defines, in the task's kernel, the library functions the coder was shown
and the library functions they call (each once per kernel, again after a restart; a step's
new ones in one cell, each run on its own so one that fails does not stop the others). After a
successful cell it records the top-level functions the cell defined, with the calls made to
them (probes), as candidates for the librarian, and counts a use of every library function
the cell called. After a successful step it may hand the planner's next planned step straight
to the coder (``agent.follow_plan``, nodes/plan.py).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

from dynagraph.nodes.context import Context
from dynagraph.nodes.plan import follow_plan_update, plan_follow_limit
from dynagraph.nodes.services import NodeServices, kernel_key
from dynagraph.nodes.state import State
from dynagraph.tools import codeparse
from dynagraph.tools.actions import parse_final_answer, strip_final_answer
from dynagraph.tools.kernel import KernelSession, definitions, probes
from dynagraph.tools.librarian.candidate import Candidate
from dynagraph.tools.library import FunctionRecord
from dynagraph.tools.packages import missing_module_note
from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

#: What a cell is told when its task's earlier cells ran in another kernel.
RESUME_NOTE = "variables, imports and functions from earlier steps are gone; define them again"

#: Library functions now defined in a kernel ({name: record id}) and notes on failures.
Defined = tuple[dict[str, str], list[str]]


class ExecutorNode:
    name = "executor"

    def __init__(self, services: NodeServices) -> None:
        self.services = services
        self._defined: dict[str, dict[str, str]] = {}  # kernel key -> {function name: record id}
        self._watched: weakref.WeakSet[KernelSession] = weakref.WeakSet()
        self._ran: weakref.WeakSet[KernelSession] = weakref.WeakSet()  # ran a step's cell
        self._ahead: dict[str, Future[tuple[list[str], Defined]]] = {}
        self._lock = threading.Lock()

    # -- kernel preparation ---------------------------------------------------------------------
    def session_for(self, key: str) -> KernelSession:
        """The task's kernel (started here unless the planner started it ahead), watched so
        that a restart forgets what this node defined in it."""
        session = self.services.kernels.peek(key) or self.services.kernels.get(key)

        def after_restart(s: KernelSession, key: str = key) -> None:
            with self._lock:  # the session bootstrapped the new kernel; our definitions are gone
                self._defined.pop(key, None)

        with self._lock:
            if session not in self._watched:
                self._watched.add(session)
                session.on_restart.append(after_restart)
        return session

    def define_ahead(self, key: str, record_ids: list[str]) -> None:
        """Define a step's library hits in its kernel in the background, while the coder's
        model call is out; the executor then takes the outcome instead of a round trip."""
        if not record_ids:
            return
        future: Future[tuple[list[str], Defined]] = Future()

        def define() -> None:
            try:
                session = self.session_for(key)
                future.set_result(
                    (record_ids, self.define_library_functions(key, session, record_ids))
                )
            except BaseException as exc:  # the executor defines them itself
                future.set_exception(exc)

        with self._lock:
            self._ahead[key] = future
        threading.Thread(target=define, name="dynagraph-define-ahead", daemon=True).start()

    def defined_for_step(self, key: str, session: KernelSession, record_ids: list[str]) -> Defined:
        """The step's hits defined: by :meth:`define_ahead` when it defined these ids (waited
        for), else now."""
        with self._lock:
            ahead = self._ahead.pop(key, None)
        if ahead is not None:
            try:
                ids, outcome = ahead.result()
            except Exception:
                ids, outcome = None, None
            if ids == record_ids and outcome is not None:
                return outcome
        return self.define_library_functions(key, session, record_ids)

    def define_library_functions(
        self, key: str, session: KernelSession, record_ids: list[str]
    ) -> Defined:
        """Define records (dependencies first) not yet in the kernel.

        Returns every library function now defined ({name: id}) and notes on failures.
        """
        library = self.services.library
        with self._lock:
            defined = self._defined.setdefault(key, {})
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
        todo = [r for r in ordered if defined.get(r.name) != r.id]
        if not todo:
            return dict(defined), notes
        if len(todo) == 1:  # its own cell: the cheapest round trip, and its error is its own
            result = session.execute(todo[0].kernel_source(), timeout=30, silent=True)
            failed = (
                {} if result.ok() else {todo[0].name: f"{result.error_name}: {result.error_value}"}
            )
        else:  # one cell for all, each source run on its own (tools/kernel/definitions.py)
            cell = definitions.define_code([(r.name, r.kernel_source()) for r in todo])
            result = session.execute(
                cell, timeout=30 + 5 * len(todo), silent=True, output_limit=1024 * 1024
            )
            failed = definitions.failures(result, [r.name for r in todo])
        for record in todo:
            if record.name in failed:
                notes.append(
                    f"library function {record.name} could not be defined: {failed[record.name]}"
                )
            else:
                defined[record.name] = record.id
        return dict(defined), notes

    def context_sources(self, state: State, library_names: dict[str, str]) -> Iterator[str]:
        """What the kernel ran before this cell, for resolving the names the cell's functions
        use (docs/architecture.md, "Names a cell's function uses"): the imports and globals of
        the library functions defined in it, then the task's earlier cells and attempts.
        Lazy: a cell that defines no function never reads them."""
        for record_id in library_names.values():
            record = self.services.library.get(record_id)
            if record is not None:
                yield from (*record.imports, *record.globals)
        yield from (s.get("code") or "" for s in state.get("steps") or [])
        yield from (a.get("code") or "" for a in state.get("failed_attempts") or [])

    # -- the node -------------------------------------------------------------------------------
    def __call__(
        self, state: State, runtime: Runtime[Context], config: RunnableConfig
    ) -> dict[str, Any]:
        settings = self.services.settings
        context = runtime.context or Context()
        key = kernel_key(state, config)
        session = self.session_for(key)
        restarts_before = session.restarts
        hit_ids = [h["id"] for h in state.get("hits") or []]
        library_names, notes = self.defined_for_step(key, session, hit_ids)
        # the task ran cells before, but not in this kernel: it was resumed in a new process
        # (or its kernel was replaced); what earlier steps defined is gone
        earlier = bool(state.get("steps") or state.get("failed_attempts"))
        with self._lock:
            resumed = earlier and session not in self._ran
            self._ran.add(session)
        if resumed:
            notes.append(f"[note] this task was resumed in a new kernel: {RESUME_NOTE}")
        code = state.get("code") or ""
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
            earlier = {c["name"] for c in state.get("candidates") or []}
            update["candidates"] += [
                {"name": name, "probes": calls_made, "probes_only": True}
                for name, calls_made in recorded.items()
                if name in earlier and name not in defined_names and name not in library_names
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
                max_steps=context.max_steps or settings.agent.max_steps,
                follow_limit=plan_follow_limit(context, settings.agent),
            )
            update.update(following or {})
        if runtime.stream_writer:
            runtime.stream_writer(
                {
                    "node": "executor",
                    "step": len(state.get("steps", [])) + 1,
                    "attempt": attempts,
                    "status": result.status,
                    "observation": observation[:400],
                    "retry": retry,
                    "restarted": restarted,
                    "next_step": update["instruction"] if update["follow"] else None,
                }
            )
        return update
