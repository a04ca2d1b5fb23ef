"""The ``dynagraph`` command: run a task, inspect and manage the function library.

Exit status: 0 success, 1 the task failed, 2 a configuration or endpoint problem (one line on
stderr saying what to set). Progress goes to stderr, answers and JSON to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from dynagraph.evals.cli import add_eval_parser
from dynagraph.graphs.cli_batch import add_batch_parser
from dynagraph.graphs.cli_library import UserError, add_library_parser
from dynagraph.graphs.settings import ConfigError, Settings, load_settings

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


# -- run ----------------------------------------------------------------------------------------
def _progress_printer(stream) -> Callable[[dict[str, Any]], None]:
    def show(event: dict[str, Any]) -> None:
        node = event.get("node", "?")
        step = event.get("step", "")
        if node == "planner":
            if event.get("final_answer") is not None:
                line = f"answer: {event['final_answer']}"
            else:
                line = f"next: {event.get('next_step')}"
            print(f"[planner  step {step}] {line}", file=stream)
        elif node == "coder":
            found = ", ".join(event.get("retrieved") or []) or "none"
            print(
                f"[coder    step {step}.{event.get('attempt')}] library hits: {found}", file=stream
            )
            for code_line in (event.get("code") or "").rstrip().splitlines():
                print(f"    {code_line}", file=stream)
        elif node == "executor":
            obs = (event.get("observation") or "").strip().replace("\n", "\n    ")
            print(
                f"[executor step {step}.{event.get('attempt')}] {event.get('status')}", file=stream
            )
            if obs:
                print(f"    {obs}", file=stream)
        elif node == "librarian":
            for d in event.get("decisions") or []:
                print(
                    f"[librarian] {d.get('name')}: {d.get('action')} ({d.get('reason')})",
                    file=stream,
                )
        stream.flush()

    return show


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from dynagraph.nodes.context import Context
    from dynagraph.graphs.run import run_task

    context = Context(
        planner_model=args.planner_model,
        coder_model=args.coder_model,
        max_steps=args.max_steps,
        use_library=not args.no_library,
    )
    on_event = None if args.quiet else _progress_printer(sys.stderr)
    result = run_task(
        args.task, settings, thread_id=args.thread, context=context, on_event=on_event
    )
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
        "--config", help="YAML config (default: $DYNAGRAPH_CONFIG, else configs/default.yaml)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="solve one task", description="Solve one task.")
    run.add_argument("task", help="the task, in plain words")
    run.add_argument("--config", dest="sub_config", help="YAML config file")
    run.add_argument("--thread", help="thread id (default: a new uuid); resumes an unfinished one")
    run.add_argument("--json", action="store_true", help="print one JSON object with the result")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    run.add_argument("--max-steps", type=int, help="override agent.max_steps")
    run.add_argument("--planner-model", help="override the planner's model name")
    run.add_argument("--coder-model", help="override the coder's model name")
    run.add_argument(
        "--no-library", action="store_true", help="neither search nor grow the library"
    )
    run.set_defaults(handler=cmd_run)

    add_library_parser(sub)
    add_batch_parser(sub)
    add_eval_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    config = getattr(args, "leaf_config", None) or getattr(args, "sub_config", None) or args.config
    try:
        settings = load_settings(config)
        return args.handler(args, settings)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line for the errors a user acts on, tracebacks for bugs
        line = _user_facing(exc)
        if line is None:
            raise
        print(f"dynagraph: {line}", file=sys.stderr)
        return EXIT_CONFIG


def _user_facing(exc: BaseException) -> str | None:
    from dynagraph.tools.embeddings import EmbedderError
    from dynagraph.tools.kernel import KernelError
    from dynagraph.tools.library import LibraryError
    from dynagraph.tools.models import ModelEndpointError

    if isinstance(exc, ConfigError | UserError | ModelEndpointError | LibraryError | EmbedderError):
        return str(exc)
    if isinstance(exc, KernelError):  # e.g. the sandbox is asked for and bwrap is missing
        return str(exc).splitlines()[0]
    if isinstance(exc, ValueError) and "already holds a finished task" in str(exc):
        return str(exc)
    return None


if __name__ == "__main__":
    sys.exit(main())
