"""``dynagraph batch TASKS.jsonl``: run many tasks at once (see graphs/batch.py)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dynagraph.graphs.cli_overrides import CONFIG_HELP, add_override_args, context_from_args
from dynagraph.graphs.settings import Settings
from dynagraph.tools.errors import InputError

EXIT_OK, EXIT_FAILED = 0, 1


def cmd_batch(args: argparse.Namespace, settings: Settings) -> int:
    from dynagraph.graphs.batch import (
        BatchInputError,
        BatchInterrupted,
        BatchSetupError,
        read_tasks,
        run_batch,
    )

    if args.concurrency < 1:
        raise InputError("--concurrency must be at least 1")
    if args.pool_size is not None and args.pool_size < 0:
        raise InputError("--pool-size must be 0 or more")
    context = context_from_args(args)  # the flags first: a bad one is refused before the file
    try:
        tasks = read_tasks(args.tasks)
    except BatchInputError as exc:
        raise InputError(str(exc)) from exc
    try:
        summary = run_batch(
            tasks,
            settings,
            concurrency=args.concurrency,
            out=args.out,
            progress=None if args.quiet else sys.stderr,
            context=context,
            pool_size=args.pool_size,
        )
    except BatchInterrupted as stopped:  # the summary line all the same, then exit 130 / 143
        print(stopped.summary.line(), file=sys.stderr)
        raise
    print(summary.line(), file=sys.stderr)
    if summary.all_setup_errors:  # as `run` would have: exit 2, the problem in one line
        line = (
            f"all {summary.finished} tasks stopped on a configuration or endpoint problem; "
            f"the first: {summary.setup_problem}"
        )
        if args.out:  # their `error` lines are retried by a rerun (graphs/batch.py)
            line += "; once it is fixed, run the same command again to retry them"
        raise BatchSetupError(line)
    return EXIT_OK if summary.failed + summary.error == 0 else EXIT_FAILED


def add_batch_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``batch`` to the top-level subparsers."""
    batch = sub.add_parser(
        "batch",
        help="run many tasks at once from a JSON Lines file",
        description="Run the tasks of a JSON Lines file ({'id': ..., 'task': ...} per line) in "
        "parallel, each in its own kernel; one result line per task. With --out, tasks already "
        "finished there are skipped (resume by running the same command again).",
    )
    batch.add_argument("tasks", help="JSON Lines file: one {'id': ..., 'task': ...} per line")
    batch.add_argument(
        "--concurrency", "-j", type=int, default=2, help="tasks run at once (default 2)"
    )
    batch.add_argument("--out", help="append result lines here and skip ids already finished")
    batch.add_argument("--config", dest="sub_config", metavar="F", help=CONFIG_HELP)
    batch.add_argument(
        "--pool-size",
        type=int,
        help="warm kernels kept ready (default: executor.pool_size, else concurrency + 1)",
    )
    add_override_args(batch, no_library_help="neither search nor grow the library")
    batch.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    batch.set_defaults(handler=cmd_batch, runs_tasks=True)
    return batch
