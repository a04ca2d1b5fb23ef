"""The ``dynagraph`` command: run a task, inspect and manage the function library.

Exit status: 0 success, 1 the task failed, 2 a configuration, endpoint or input problem (one
line on stderr saying what to set), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM), 141
stdout's reader went away. Progress goes to stderr, answers and JSON to stdout.

Ctrl-C or SIGTERM interrupts the running cells at once (they run in worker threads, which a
signal never reaches: ``dynagraph.tools.kernel.cell.cancel_running``), shuts the kernels
down and exits; a second signal, or a stop still running after ``STOP_DEADLINE_S``, exits at
once (the kernels die with the process: PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from dynagraph.graphs.cli_batch import add_batch_parser
from dynagraph.graphs.cli_demo import add_demo_parser
from dynagraph.graphs.cli_eval import add_eval_parser
from dynagraph.graphs.cli_library_args import add_library_parser
from dynagraph.graphs.cli_overrides import CONFIG_HELP, add_override_args, context_from_args
from dynagraph.graphs.settings import Settings, load_settings
from dynagraph.graphs.startup import resume_collector
from dynagraph.nodes.events import render_event
from dynagraph.tools.errors import DynagraphError

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
EXIT_BROKEN_PIPE = 141  # as if killed by SIGPIPE, like other filters whose reader went away
STOP_DEADLINE_S = 5.0  # after the first signal: a stop stuck longer (a model call) exits hard


# -- run ----------------------------------------------------------------------------------------
def _progress_printer(stream) -> Callable[[dict[str, Any]], None]:
    def show(event: dict[str, Any]) -> None:
        for line in render_event(event):
            print(line, file=stream)
        stream.flush()

    return show


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    import uuid

    from dynagraph.graphs.run import run_task

    context = context_from_args(args)
    on_event = None if args.quiet else _progress_printer(sys.stderr)
    thread = args.thread or str(uuid.uuid4())  # named here: an error still says which to resume
    try:
        result = run_task(args.task, settings, thread_id=thread, context=context, on_event=on_event)
    except DynagraphError as exc:
        if args.json:  # a caller reading stdout still gets one object
            error = {"task": args.task, "status": "error", "error": one_line(exc)}
            print(json.dumps({**error, "thread_id": thread}, ensure_ascii=False))
        raise
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False, default=str))
    else:
        if result.status != "done":
            print(f"task {result.status}: {result.error or 'no answer'}", file=sys.stderr)
        if result.answer is not None:
            print(result.answer)
        tokens = sum(u.get("total_tokens", 0) for u in result.usage.values())
        print(
            f"steps: {len(result.steps)}, functions created: {len(result.functions_created)}, "
            f"reused: {len(result.functions_reused)}, tokens: {tokens}, thread: {result.thread_id}",
            file=sys.stderr,
        )
    return EXIT_OK if result.status == "done" else EXIT_FAILED


# -- parser -------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dynagraph",
        description="An agent that solves tasks by writing and running Python, "
        "and keeps the functions it writes.",
    )
    parser.add_argument(
        "--config",
        metavar="F",
        help=f"{CONFIG_HELP} (default: $DYNAGRAPH_CONFIG, else default)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="solve one task", description="Solve one task.")
    run.add_argument("task", help="the task, in plain words")
    run.add_argument("--config", dest="sub_config", metavar="F", help=CONFIG_HELP)
    run.add_argument("--thread", help="thread id (default: a new uuid); resumes an unfinished one")
    run.add_argument("--json", action="store_true", help="print one JSON object with the result")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    add_override_args(run, no_library_help="neither search nor grow the library")
    run.set_defaults(handler=cmd_run, runs_tasks=True)

    add_library_parser(sub)
    add_batch_parser(sub)
    add_eval_parser(sub)
    add_demo_parser(sub)
    return parser


#: SIGINT (Ctrl-C), SIGTERM (kill, a service manager) and SIGHUP (the terminal or ssh session
#: closed: its default ended the process with no cleanup at all).
_STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class _StopOnSignal:
    """SIGINT, SIGTERM and SIGHUP while a command runs: the first cancels the running cells (for
    good: the process is stopping) and raises KeyboardInterrupt in the main thread, so the usual
    cleanup runs (kernels shut down, files closed); the second exits at once, and so does a
    stop still running ``STOP_DEADLINE_S`` later. Installed only in the main thread."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}
        self._timer: threading.Timer | None = None

    def __enter__(self) -> _StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for signum in _STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        if self.signum is None and self._timer is not None:
            self._timer.cancel()

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or signal.SIGINT)

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is not None:  # the second one: no more waiting
            _hard_exit("interrupted again: exiting now", self.exit_code)
        self.signum = signum
        # the deadline first: whatever follows may fail, and a KeyboardInterrupt raised inside
        # an import may be swallowed by the module being imported
        self._timer = threading.Timer(
            STOP_DEADLINE_S,
            _hard_exit,
            (f"still stopping after {STOP_DEADLINE_S:g} s: exiting now", self.exit_code),
        )
        self._timer.daemon = True
        self._timer.start()
        # not loaded, or still being imported (a signal in the first second): no cell runs
        cells = sys.modules.get("dynagraph.tools.kernel.cell")
        cancel = getattr(cells, "cancel_running", None)
        if cancel is not None:
            cancel(for_good=True)  # flags only: safe in a handler
        raise KeyboardInterrupt


def _hard_exit(message: str, code: int) -> None:
    """Exit now, from a signal handler or a timer thread (no print: it may be mid-write)."""
    try:
        os.write(2, f"dynagraph: {message}\n".encode())
    finally:
        os._exit(code)


def _exit_after_cleanup(code: int) -> None:
    """Exit a process that was told to stop, once the cleanup is done: the atexit handlers
    (kernel shutdowns still running, logging) run, the interpreter's own teardown (a full
    collection of a large heap: ~1 s on a loaded machine) is skipped."""
    import atexit

    try:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        atexit._run_exitfuncs()
    finally:
        os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    config = getattr(args, "leaf_config", None) or getattr(args, "sub_config", None) or args.config
    stop = _StopOnSignal()
    try:
        with stop:
            settings = load_settings(config)
            if getattr(args, "runs_tasks", False):
                import_task_machinery()
            resume_collector()  # the start is over (graphs/startup.py)
            code = args.handler(args, settings)
            sys.stdout.flush()  # a closed pipe must fail here, inside the handler below
        return code
    except KeyboardInterrupt:
        return _interrupted(stop)
    except BrokenPipeError:  # `dynagraph library show X | head -1`: the reader has gone
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except Exception as exc:
        if stop.signum is not None:  # a Ctrl-C that a library turned into its own error (one
            return _interrupted(stop)  # raised inside pydantic's schema build: SchemaError)
        if isinstance(exc, DynagraphError):  # one line a user acts on; bugs keep their traceback
            print(f"dynagraph: {one_line(exc)}", file=sys.stderr)
            return exc.exit_code
        raise


def _interrupted(stop: _StopOnSignal) -> int:
    """Say that the command was interrupted; exit after the cleanup when a signal stopped it."""
    signame = signal.Signals(stop.signum).name if stop.signum else "SIGINT"
    print(f"interrupted ({signame})", file=sys.stderr)
    if stop.signum is not None:
        _exit_after_cleanup(stop.exit_code)
    return stop.exit_code


def import_task_machinery() -> None:
    """Import what a task's first model request needs (the graph and its nodes, LangGraph,
    the chat client) before the task starts: under the entry point's paused collector
    (graphs/startup.py) rather than inside the planner's first call."""
    import dynagraph.graphs.run  # noqa: F401
    from dynagraph.tools.models import import_chat_client

    import_chat_client()


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush does not fail again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def one_line(exc: DynagraphError) -> str:
    """The first line of the error's message (a kernel's start error may carry its log)."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


if __name__ == "__main__":
    sys.exit(main())
