"""The script API: ``run_task(task)`` runs one task to the end and returns what happened.

It compiles the graph with a SQLite checkpointer (so a thread's state can be inspected or an
interrupted task resumed), passes progress events to an optional callback, and turns model
endpoint failures into one-line :class:`ModelEndpointError` messages.

When the state is saved is ``checkpoint_durability`` (LangGraph's durability). The default,
``async`` (LangGraph's too), writes a checkpoint after every node from a background thread, so
a task resumes at its last node even after its process was killed. That thread competes for the
GIL with the next node's receive loop and model call: 1-3 ms a step, which a real model's
seconds hide but a zero-latency one does not (7.0 vs 6.0 ms a step on the loopback bench,
bench/README.md 13h). ``exit`` writes once, when the run ends however it ends (done, failed,
KeyboardInterrupt, an error): a stopped task still resumes; a killed one starts over.
"""

from __future__ import annotations

import contextlib
import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dynagraph.graphs.graph import build_graph
from dynagraph.graphs.services import Services
from dynagraph.graphs.settings import Settings, load_settings
from dynagraph.nodes.context import Context
from dynagraph.nodes.events import LISTENER_KEY
from dynagraph.nodes.planner import task_problem
from dynagraph.tools.errors import EnvironmentProblem, InputError
from dynagraph.tools.librarian.replay import clip
from dynagraph.tools.library.sqlite_atomic import write_ahead
from dynagraph.tools.models import ModelEndpointError, describe_endpoint_error, resolve_model
from dynagraph.tools.thread_lock import thread_lock
from dynagraph.tools.writable import writable_folder


@dataclass
class TaskResult:
    """The outcome of one task, as ``dynagraph run --json`` prints it."""

    task: str
    answer: str | None
    status: str
    thread_id: str
    error: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    functions_created: list[str] = field(default_factory=list)
    functions_reused: list[str] = field(default_factory=list)
    usage: dict[str, dict[str, int]] = field(default_factory=dict)
    report: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["library"] = data["report"]  # the librarian's decisions, as `run --json` names them
        return data


def recursion_limit(settings: Settings, max_steps: int) -> int:
    """Enough super-steps for every step to use all its retries, plus the final turns."""
    per_step = 1 + 2 * (settings.agent.max_code_retries + 1)
    return per_step * (max_steps + 1) + 10


def preflight(services: Services, context: Context) -> None:
    """Fail before any work, in one line, when a model's API key is missing (ConfigError) or
    the tasks' folder cannot be written (EnvironmentProblem: it failed with a traceback when
    the first cell's kernel started, after two model calls)."""
    for node in ("planner", "coder"):
        services.models.check(node, context.model_override(node))
    settings = services.settings
    writable_folder(
        settings.path(settings.executor.workdir),
        what="the task folders",
        fix="set executor.workdir or DYNAGRAPH_HOME to a writable place",
    )


def thread_lock_folder(settings: Settings) -> Path:
    """Where the threads' lock files are (tools/thread_lock.py): beside the checkpoints."""
    return settings.path(settings.checkpoint_path).parent / "thread-locks"


def open_checkpointer(settings: Settings):
    from langgraph.checkpoint.sqlite import SqliteSaver

    path = settings.path(settings.checkpoint_path)
    conn = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
        # no fsync per checkpoint (3 per step): a killed process loses nothing, a power cut
        # at most the last checkpoints (the task resumes a step earlier)
        write_ahead(conn, 30)
        saver = SqliteSaver(conn)
        saver.setup()  # creates the tables now, so an unwritable file fails here, in one line
    except (OSError, sqlite3.Error) as exc:
        if conn is not None:
            conn.close()
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise EnvironmentProblem(
            f"cannot write the checkpoints at {path}: {why} "
            "(set DYNAGRAPH_HOME or checkpoint_path to a writable place)"
        ) from exc
    return saver, conn


def run_task(
    task: str,
    settings: Settings | None = None,
    thread_id: str | None = None,
    *,
    context: Context | None = None,
    services: Services | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> TaskResult:
    """Solve ``task``; returns the answer, the steps, functions created and reused, usage.

    ``thread_id`` names the run (default: a new uuid). A thread holds one task: an
    unfinished thread is resumed (stopped, failed or killed: see ``checkpoint_durability`` in
    the module docstring), a finished one is refused. ``on_event`` gets each node's progress
    event (nodes/events.py), called from the node, in the caller's thread: the nodes run
    there, so a KeyboardInterrupt stops a running cell or model call at once.
    """
    settings = settings or (services.settings if services else load_settings())
    own_services = services is None
    services = services or Services(settings)
    context = context or Context()
    thread_id = thread_id or str(uuid.uuid4())
    held = contextlib.ExitStack()  # the checkpoint connection, then the thread's lock
    try:
        problem = task_problem(task)
        if problem is not None:
            raise InputError(f"the task cannot be run: {problem}")
        preflight(services, context)  # a missing key is said before any file is written
        saver, conn = open_checkpointer(settings)
        held.callback(conn.close)
        held.enter_context(thread_lock(thread_lock_folder(settings), thread_id))
    except BaseException:
        held.close()
        if own_services:
            services.close()
        raise
    try:
        graph = build_graph(settings, services=services, checkpointer=saver)
        max_steps = context.step_limit(settings.agent)
        configurable: dict[str, Any] = {"thread_id": thread_id}
        if on_event is not None:  # called by each node, in its thread (nodes/events.py: emit)
            configurable[LISTENER_KEY] = on_event
        config = {
            "configurable": configurable,
            "recursion_limit": recursion_limit(settings, max_steps),
        }
        snapshot = graph.get_state(config)
        inputs: dict[str, Any] | None = {"task": task}
        if snapshot.values:
            # a node that ran on while the run was stopped, and finished, has its writes saved
            # but no checkpoint after them: LangGraph lists it among the tasks, not as `next`
            if not snapshot.next and not snapshot.tasks:
                raise InputError(f"thread {thread_id} already holds a finished task; use a new id")
            stored = snapshot.values.get("task")
            if isinstance(stored, str) and stored.strip() != task.strip():
                raise InputError(
                    f"thread {thread_id} holds another task ({clip(stored, 60)!r}); run it with that "
                    "text to resume it, or use a new thread id"
                )
            inputs = None  # resume the interrupted task where it stopped
        try:
            # no "custom" stream mode: with it LangGraph runs every node in a worker thread
            graph.invoke(inputs, config, context=context, durability=settings.checkpoint_durability)
        except Exception as exc:
            line = describe_endpoint_error(exc, _entry_for(settings, context), "planner")
            if line:
                raise ModelEndpointError(line) from exc
            raise
        values = graph.get_state(config).values
        return TaskResult(
            task=values.get("task", task),
            answer=values.get("answer"),
            status=values.get("status", "failed"),
            thread_id=thread_id,
            error=values.get("error"),
            steps=values.get("steps", []),
            functions_created=values.get("functions_created", []),
            functions_reused=sorted(set(values.get("functions_reused", []))),
            usage=values.get("usage", {}),
            report=values.get("report", []),
        )
    finally:
        services.kernels.release(thread_id)
        services.drop_scratch(services.workdir_for(thread_id))  # started ahead, never claimed
        held.close()
        if own_services:
            services.close()


def _entry_for(settings: Settings, context: Context):
    try:
        return resolve_model(settings.models, "planner", context.model_override("planner"))
    except Exception:
        return None
