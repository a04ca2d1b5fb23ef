"""``dynagraph eval gaia|math|tabmwp``: run a benchmark on the user's model endpoint.

Results go to a JSON Lines file (one record per task, resumable: rerun the same command to
continue) and a summary table is printed at the end, also saved as ``<out>.summary.json``.
``--no-library`` runs the same eval without searching or growing the library, so the two
summaries show what the library adds on this model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dynagraph.evals.benchmarks import BENCHMARKS, Benchmark
from dynagraph.evals.runner import run_eval
from dynagraph.evals.summary import format_summary, summarize
from dynagraph.evals.tasks import EvalDataError, EvalTask
from dynagraph.graphs.cli_overrides import (
    CONFIG_HELP,
    add_override_args,
    context_from_args,
    positive_int,
)

EXIT_OK, EXIT_CONFIG = 0, 2


def default_out(benchmark: str, use_library: bool) -> Path:
    return Path(f"{benchmark}{'' if use_library else '-no-library'}-results.jsonl")


def summary_path(out: Path) -> Path:
    return out.with_name(out.stem + ".summary.json")


def load_tasks(benchmark: Benchmark, data: str) -> list[EvalTask]:
    """The benchmark's tasks from ``data``, or EvalDataError: one line naming the file and what
    was wrong. A loader meets whatever file it is given (not UTF-8, a line that is JSON but
    no object, a short CSV row, a corrupt parquet), and each failed with a traceback."""
    try:
        tasks = benchmark.load(data)
    except EvalDataError:
        raise
    except UnicodeDecodeError:
        raise EvalDataError(f"{data} is not {benchmark.name} data (not UTF-8 text)") from None
    except OSError as exc:
        raise EvalDataError(f"cannot read {data}: {exc.strerror or exc}") from None
    except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
        why = f"{type(exc).__name__}: {str(exc)[:200]}"
        raise EvalDataError(f"{data} is not {benchmark.name} data as expected ({why})") from None
    if not tasks:
        raise EvalDataError(f"{data} holds no {benchmark.name} task")
    return tasks


def add_eval_parser(subparsers: Any) -> None:
    """Add the ``eval`` command to the ``dynagraph`` parser's subparsers."""
    data_help = "; ".join(f"{b.name}: {b.data_help}" for b in BENCHMARKS.values())
    parser = subparsers.add_parser(
        "eval",
        help="run a benchmark (GAIA, MATH, TabMWP) on your model endpoint",
        description="Run a benchmark from local files and print accuracy, steps, tokens per "
        "node and library reuse. Results are resumable: rerun the same command to continue.",
    )
    parser.add_argument("benchmark", choices=sorted(BENCHMARKS), help="which benchmark")
    parser.add_argument("--data", required=True, metavar="PATH", help=f"local data ({data_help})")
    parser.add_argument(
        "--limit", type=positive_int, metavar="N", help="only the first N tasks (N >= 1)"
    )
    parser.add_argument("--config", dest="sub_config", metavar="F", help=CONFIG_HELP)
    parser.add_argument(
        "--out",
        metavar="RESULTS.jsonl",
        help="results file (default: <benchmark>[-no-library]-results.jsonl); reruns resume it",
    )
    parser.add_argument(
        "--library",
        metavar="PATH",
        help="SQLite library file for this eval (default: the config's library.path); "
        "a new file measures accumulation from an empty library",
    )
    add_override_args(
        parser,
        no_library_help="neither search nor grow the library (to measure what the library adds)",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    parser.set_defaults(handler=cmd_eval, runs_tasks=True)


def _with_library_path(settings: Any, path: str | None) -> Any:
    if not path:
        return settings
    library = settings.library.model_copy(update={"path": str(Path(path).expanduser())})
    return settings.model_copy(update={"library": library})


def cmd_eval(args: argparse.Namespace, settings: Any) -> int:
    """Load the benchmark, solve every task with ``run_task``, print and save the summary."""
    from dynagraph.graphs.run import run_task
    from dynagraph.graphs.services import Services
    from dynagraph.tools.errors import ConfigError
    from dynagraph.tools.library import LibraryError
    from dynagraph.tools.models import ModelEndpointError

    benchmark = BENCHMARKS[args.benchmark]
    use_library = not args.no_library
    out = Path(args.out) if args.out else default_out(benchmark.name, use_library)
    context = context_from_args(args)  # the flags first: a bad one is refused before the data
    try:
        tasks = load_tasks(benchmark, args.data)
    except EvalDataError as exc:
        print(f"dynagraph: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    settings = _with_library_path(settings, args.library)
    services = Services(settings)

    def solve(prompt: str) -> Any:
        return run_task(prompt, settings, context=context, services=services)

    print(
        f"{benchmark.name}: {len(tasks)} tasks from {args.data}, library "
        f"{'on' if use_library else 'off'}, results in {out}",
        file=sys.stderr,
    )
    try:
        records = run_eval(
            tasks,
            solve,
            benchmark.score,
            out,
            limit=args.limit,
            run_info={"benchmark": benchmark.name, "use_library": use_library},
            abort_on=(ModelEndpointError, ConfigError, LibraryError),  # fail every task alike
            progress_stream=None if args.quiet else sys.stderr,
        )
    except (EvalDataError, LibraryError) as exc:  # the library cannot be opened: every task
        print(f"dynagraph: {exc}", file=sys.stderr)  # would fail alike
        return EXIT_CONFIG
    finally:
        services.close()
    summary = summarize(records)
    title = f"{benchmark.name} ({'library' if use_library else 'no library'}), {out}"
    print(format_summary(summary, title=title))
    summary_path(out).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return EXIT_OK
