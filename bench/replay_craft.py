#!/usr/bin/env python
"""End-to-end replay on real LLM code: the 500 CRAFT TabMWP questions through the real graph.

Why: there is no LLM here, but there is code GPT-4 really wrote for 500 table word problems
(``../shared/data/craft-tabmwp``, see its README). Replaying it through the real graph, real
kernels and one growing library shows how the framework handles real model output: answers
that match, functions the librarian admits, versions and duplicates it makes, kernel restarts,
and seconds per task. It measures the framework, not a model: the planner and the coder are the
replay model of ``bench/replay_model.py`` (protocol in its docstring). Per question:

- task = the question, and when the row has a table, a blank line, ``Table:`` and the table
  (any CRAFT-format toolset works: bench/craft.py);
- the coder's one cell = the question's ``code`` + the python block of its ``api_call``;
- the planner asks for that step, then answers with the last line the cell printed (its
  displayed result when it printed nothing), or ``""`` when the cell failed.

Questions run in file order (epoch_0 .. epoch_3), with accumulation on: one library for the
whole run, in a temporary ``DYNAGRAPH_HOME``. Answers are matched by the one matcher of benches
and evals (``evals/math_answers.py: answers_match``): numbers by value (``$``, ``%``, units,
thousands separators, fractions, ``\\frac``), tuples and intervals, symbolic equality, else text
with operators kept. Many cells print a sentence ("Alec needs $0.94 to buy ..."): the strict
share asks the answer to be the number; the lenient share accepts any number of the answer line.

Usage: ``python bench/replay_craft.py [--data DIR] [--limit N] [--out FILE] [--plot FILE]``
(without ``--out``, a new file under bench/results/runs/; the plot goes beside it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dynagraph.evals.math_answers import answers_match  # noqa: E402
from dynagraph.graphs.run import run_task  # noqa: E402
from dynagraph.graphs.services import Services  # noqa: E402

from bench.common import (  # noqa: E402
    REPO_ROOT,
    RESULTS_DIR,
    SHARED_DATA,
    add_out_argument,
    default_out,
    mark_epochs,
    percentile,
    print_table,
    save_figures,
    save_plot,
)
from bench.craft import RAW_FILE, epoch_files, python_block, read_jsonl, task_text  # noqa: E402
from bench.replay_model import ReplayModel, replay_settings  # noqa: E402

DEFAULT_DATA = SHARED_DATA / "craft-tabmwp"
#: the committed figures and plot (bench/README.md quotes them): written only when --out names it
COMMITTED_OUT = RESULTS_DIR / "replay_craft.json"
COMMITTED_PLOT = RESULTS_DIR / "replay_library_size.png"


# -- data -------------------------------------------------------------------------------------
def load_questions(data_dir: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """Every row of ``epoch_*/1_raw_specific_solutions.json`` (JSON Lines), in epoch order."""
    rows = [
        {**row, "epoch": path.parent.name}
        for path in epoch_files(data_dir, RAW_FILE)
        for row in read_jsonl(path)
    ]
    return rows[:limit] if limit else rows


def replay_cell(row: dict[str, Any]) -> str:
    """GPT-4's code for the question: its function(s), then the call that prints the answer."""
    return f"{row['code'].strip()}\n\n{python_block(row['api_call'])}\n"


# -- the run ----------------------------------------------------------------------------------
def run_replay(
    rows: list[dict[str, Any]], home: Path, *, progress_every: int = 25
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Replay every row through run_task with one Services (one library); one record per row,
    and how the library ended."""
    os.environ["DYNAGRAPH_HOME"] = str(home)
    records: list[dict[str, Any]] = []
    with ReplayModel() as replay:
        for row in rows:
            replay.add(task_text(row), replay_cell(row))
        services = Services(replay_settings(replay.base_url, home))
        names: set[str] = set()
        try:
            for index, row in enumerate(rows):
                started = time.perf_counter()
                result = run_task(task_text(row), services=services, thread_id=f"craft-{index}")
                seconds = time.perf_counter() - started
                actions = [d.get("action", "?") for d in result.report]
                stages = [f"{d.get('action', '?')}/{d.get('stage') or '-'}" for d in result.report]
                names.update(result.functions_created)  # names the librarian stored
                stats = services.library.stats()
                records.append(
                    {
                        "index": index,
                        "epoch": row["epoch"],
                        "tool_id": row.get("tool_id"),
                        "expected": row["answer"],
                        "answer": result.answer,
                        "match": answers_match(result.answer, row["answer"]),
                        "match_lenient": answers_match(result.answer, row["answer"], lenient=True),
                        "status": result.status,
                        "error": result.error,
                        "step_status": [s.get("status") for s in result.steps],
                        "restarts": sum(1 for s in result.steps if s.get("restarted")),
                        "actions": actions,
                        "stages": stages,
                        "reused": result.functions_reused,
                        "seconds": round(seconds, 3),
                        "library_records": stats["functions"],
                        "library_total": stats["total"],
                        "library_names": len(names),
                    }
                )
                if progress_every and (index + 1) % progress_every == 0:
                    matched = sum(r["match"] for r in records)
                    print(
                        f"[{index + 1}/{len(rows)}] match {matched}/{len(records)}, "
                        f"library {stats['functions']} records / {len(names)} names, "
                        f"last {seconds:.2f} s",
                        file=sys.stderr,
                        flush=True,
                    )
            final = library_versions(services)
        finally:
            services.close()
    return records, final


def library_versions(services: Services) -> dict[str, Any]:
    """How the library ended: records by status, and names stored in several versions."""
    records = services.library.list(status=None)
    per_name = Counter(r.name for r in records)
    return {
        "records_by_status": dict(Counter(r.status for r in records)),
        "names": len(per_name),
        "names_with_several_versions": sum(1 for c in per_name.values() if c > 1),
        "most_versions": per_name.most_common(5),
    }


def summarize(records: list[dict[str, Any]], wall_s: float) -> dict[str, Any]:
    """The figures of a run: matches, decisions, restarts, library size, time."""
    n = len(records)
    decisions = Counter(a for r in records for a in r["actions"])
    step_status = Counter(s for r in records for s in r["step_status"])
    seconds = [r["seconds"] for r in records]
    by_epoch: dict[str, list[bool]] = {}
    for r in records:
        by_epoch.setdefault(r["epoch"], []).append(r["match"])
    return {
        "questions": n,
        "matched": sum(r["match"] for r in records),
        "match_share": round(sum(r["match"] for r in records) / n, 4) if n else 0.0,
        "match_share_by_epoch": {e: round(sum(m) / len(m), 4) for e, m in by_epoch.items()},
        "matched_lenient": sum(r["match_lenient"] for r in records),
        "match_share_lenient": round(sum(r["match_lenient"] for r in records) / n, 4) if n else 0.0,
        "task_status": dict(Counter(r["status"] for r in records)),
        "step_status": dict(step_status),
        "empty_answers": sum(1 for r in records if not (r["answer"] or "").strip()),
        "librarian_decisions": dict(decisions),
        "librarian_decisions_by_stage": dict(Counter(x for r in records for x in r["stages"])),
        "tasks_reusing_library": sum(1 for r in records if r["reused"]),
        "kernel_restarts": sum(r["restarts"] for r in records),
        "library_records_final": records[-1]["library_records"] if records else 0,
        "library_names_final": records[-1]["library_names"] if records else 0,
        "median_seconds_per_task": round(statistics.median(seconds), 3) if seconds else None,
        "p90_seconds_per_task": round(percentile(seconds, 90), 3) if seconds else None,
        "wall_seconds": round(wall_s, 1),
    }


def plot_library_size(records: list[dict[str, Any]], path: Path, data_name: str = "") -> Path:
    """Active functions, names ever stored (and records incl. archived versions, when
    recorded) after each question, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["index"] + 1 for r in records]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    if all("library_total" in r for r in records):
        totals = [r["library_total"] for r in records]
        ax.plot(x, totals, label="records incl. archived versions", color="tab:grey")
    ax.plot(x, [r["library_names"] for r in records], label="names ever stored")
    ax.plot(x, [r["library_records"] for r in records], label="active functions")
    mark_epochs(ax, records)
    ax.set_xlabel(f"questions replayed ({data_name}, epochs in order)")
    ax.set_ylabel("functions in the library")
    ax.set_title("Library size over a replay of GPT-4's code")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    return save_plot(fig, path)


def print_summary(summary: dict[str, Any]) -> None:
    rows = [
        ("questions", summary["questions"]),
        (
            "answers matching (the answer is the number)",
            f"{summary['matched']} ({summary['match_share']:.1%})",
        ),
        (
            "answers matching (a number in the answer line)",
            f"{summary['matched_lenient']} ({summary['match_share_lenient']:.1%})",
        ),
        ("empty answers (cell failed or printed nothing)", summary["empty_answers"]),
        ("task status", summary["task_status"]),
        ("step status", summary["step_status"]),
        ("librarian decisions", summary["librarian_decisions"]),
        ("librarian decisions by stage", summary["librarian_decisions_by_stage"]),
        ("tasks calling a library function", summary["tasks_reusing_library"]),
        ("kernel restarts", summary["kernel_restarts"]),
        (
            "library records / distinct names at the end",
            "{} / {}".format(summary["library_records_final"], summary["library_names_final"]),
        ),
        (
            "median / p90 seconds per task",
            "{} / {}".format(summary["median_seconds_per_task"], summary["p90_seconds_per_task"]),
        ),
        ("names stored in several versions", summary["library_end"]["names_with_several_versions"]),
        ("wall time (s)", summary["wall_seconds"]),
    ]
    name = Path(summary.get("data", "CRAFT")).name
    print_table(
        f"Replay of {name} (recorded model code) through dynagraph", ["figure", "value"], rows
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="craft-tabmwp folder")
    parser.add_argument("--limit", type=int, default=None, help="replay the first N questions")
    add_out_argument(parser, "replay_craft")
    parser.add_argument("--plot", type=Path, default=None, help="PNG (default: beside --out)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)

    rows = load_questions(args.data, args.limit)
    args.out = args.out or default_out("replay_craft")
    plot = args.plot or (
        COMMITTED_PLOT
        if args.out.resolve() == COMMITTED_OUT
        else args.out.with_name(args.out.stem + ".png")
    )
    load_start = [round(x, 2) for x in os.getloadavg()]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dynagraph-replay-") as home:
        records, final = run_replay(rows, Path(home), progress_every=0 if args.quiet else 25)
    summary = {**summarize(records, time.perf_counter() - started), "library_end": final}
    summary["data"] = str(args.data)
    plot_library_size(records, plot, args.data.name)
    try:
        summary["plot"] = plot.resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        summary["plot"] = str(plot)
    summary["load_average_start"] = load_start
    summary["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    out = save_figures(args.out.stem, {**summary, "tasks": records}, results_dir=args.out.parent)
    print_summary(summary)
    print(f"figures: {out}\nplot: {plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
