#!/usr/bin/env python
"""Reuse in the loop, measured (issue 15, item 7): a replay model that reuses whenever it can.

Why: GPT-4's replayed cells (bench/replay_craft.py) always define their own function, so that
replay never shows a task calling the library. Here the coder is a replay model that calls a
library function whenever the right one is in front of it, which measures what the framework
can give to a model that reuses: whether retrieval shows the right function at the step that
needs it, whether calling it from the library (defined by the executor, not by the cell) gives
the right answer, and what it saves against the same questions with the library off. It is an
**upper bound** of what a model that always reuses could gain, not a model's behaviour.

Per question, in file order (epoch_0 .. epoch_3), over one library that starts empty:

- the question's function is the tool CRAFT's pipeline generalized from it
  (``epoch_*/4_valid_tools.csv``, same epoch and ``tool_id``), named by its first function as in
  the held-out retrieval protocol (bench/library.py);
- the coder's hits are read from the prompt the replay model receives (the ``- name(...)`` lines
  of the coder's system message); the run's steps' ``retrieved`` are kept beside them;
- when the hits name the question's function, the cell is CRAFT's ``tool_call`` alone (with the
  imports of the data's header that the call line uses): a **reuse** cell, which works only if
  the executor defined the retrieved function in the kernel;
- otherwise the cell defines CRAFT's generalized ``tool`` (with the header imports it uses) and
  calls it: a **define** cell;
- a question without a validated CRAFT tool replays GPT-4's own code, as bench/replay_craft.py
  does (a **raw** cell); it is counted apart.

The planner asks for that one step and answers with the last line the cell printed
(bench/replay_model.py). Answers are matched by ``evals/math_answers.py: answers_match``, the
matcher of every bench and eval. Each question also runs through the same graph with the
library off (``Context(use_library=False)``, what ``--no-library`` does), right after its library
run, for prompt and completion tokens, steps and seconds per task. The replay server counts
tokens as whitespace-separated words (tests/support/openai_stub.py), through the real client's
usage accounting: compare the two runs with each other, not with a tokenizer's counts.

Usage: ``python bench/reuse_replay.py [--data DIR] [--limit N] [--out FILE] [--plot FILE]``
(without ``--out``, a new file under bench/results/runs/; the plot goes beside it; without
``--limit``, the first 200 questions: epoch_0 of TabMWP, ~12 min on a loaded 2-core machine).
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dynagraph.evals.math_answers import answers_match  # noqa: E402
from dynagraph.graphs.run import run_task  # noqa: E402
from dynagraph.graphs.services import Services  # noqa: E402
from dynagraph.nodes.context import Context  # noqa: E402

from bench.common import (  # noqa: E402
    REPO_ROOT,
    SHARED_DATA,
    add_out_argument,
    default_out,
    mark_epochs,
    print_table,
    save_figures,
    save_plot,
)
from bench.craft import (  # noqa: E402
    RAW_FILE,
    VALID_FILE,
    epoch_files,
    header_names,
    probe_header,
    read_csv,
    read_jsonl,
    task_text,
)
from bench.replay_model import (  # noqa: E402
    ReplayCell,
    ReplayModel,
    replay_settings,
    sections,
    user_text,
)

DEFAULT_DATA = SHARED_DATA / "craft-tabmwp"
#: Questions per run without --limit: epoch_0 of TabMWP. Both runs (library on, off) of one
#: question took ~4.7 s on the loaded 2-core machine; 200 questions took 11 to 13 min there
#: (bench/README.md, section 12), all 500 would take ~45 min.
DEFAULT_LIMIT = 200
KINDS = ("reuse", "define", "raw")

_HIT_LINE = re.compile(r"^- ([A-Za-z_]\w*)\(", re.MULTILINE)
_FUNCTIONS_START = "already defined in the kernel:"
_FUNCTIONS_END = "\nRules:"


# -- data -------------------------------------------------------------------------------------
@dataclass
class Question:
    """One CRAFT question and the cells the reuse model can answer it with."""

    index: int
    epoch: str
    tool_id: str
    task: str
    expected: Any
    raw_cell: str
    tool_name: str | None = None  # None: CRAFT validated no generalized tool for it
    define_cell: str = ""
    reuse_cell: str = ""


def first_function(source: str) -> str | None:
    """The name of the first top-level function of ``source`` (the retrieval protocol's name
    of a CRAFT tool), None when it does not parse or defines none."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    names = [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    return names[0] if names else None


def parameters(source: str, name: str | None) -> list[str] | None:
    """The parameter names of the function ``name`` defined at the top of ``source``."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            args = node.args
            return [a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]]
    return None


def used_names(source: str) -> set[str]:
    """Every identifier ``source`` reads or binds (the names its imports must provide)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set(re.findall(r"[A-Za-z_]\w*", source))
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


def imports_for(header: str, source: str) -> str:
    """The lines of the data's import header that bind a name ``source`` uses: CRAFT's tools
    carry no imports (CRAFT ran them under a fixed header), a cell must bring its own."""
    used = used_names(source)
    return "".join(f"{line}\n" for line in header.splitlines() if header_names(line) & used)


def cell(header: str, *parts: str) -> str:
    body = "\n\n".join(p.strip() for p in parts if p.strip())
    imports = imports_for(header, body)
    return f"{imports}\n{body}\n" if imports else f"{body}\n"


def load_questions(data: Path, limit: int | None = None) -> tuple[list[Question], str]:
    """The raw questions in epoch order, each with its validated CRAFT tool when it has one;
    and the import header the cells take their imports from (bench/craft.py)."""
    from bench.replay_craft import replay_cell

    rows: list[tuple[str, dict[str, Any]]] = [
        (path.parent.name, row) for path in epoch_files(data, RAW_FILE) for row in read_jsonl(path)
    ]
    tools: dict[tuple[str, str], dict[str, str]] = {}
    for path in epoch_files(data, VALID_FILE):
        for row in read_csv(path):
            tools[(path.parent.name, str(row.get("tool_id", "")))] = row
    sources = [r["code"] for _, r in rows]
    sources += [s for t in tools.values() for s in (t["tool"], t["tool_call"])]
    header = probe_header(data, sources)
    questions = []
    for index, (epoch, row) in enumerate(rows[:limit] if limit else rows):
        question = Question(
            index=index,
            epoch=epoch,
            tool_id=str(row.get("tool_id", "")),
            task=task_text(row),
            expected=row["answer"],
            raw_cell=replay_cell(row),
        )
        tool = tools.get((epoch, question.tool_id))
        name = first_function(tool["tool"]) if tool else None
        if tool and name and task_text(tool) == question.task:
            question.tool_name = name
            question.define_cell = cell(header, tool["tool"], tool["tool_call"])
            question.reuse_cell = cell(header, tool["tool_call"])
        questions.append(question)
    return questions, header


# -- the replay model that reuses -------------------------------------------------------------
def hit_names(system: str) -> list[str]:
    """The function names listed in a coder system message (library hits, then actions)."""
    start = system.find(_FUNCTIONS_START)
    block = system[start + len(_FUNCTIONS_START) :] if start >= 0 else system
    end = block.find(_FUNCTIONS_END)
    return _HIT_LINE.findall(block[:end] if end >= 0 else block)


def system_text(request: dict[str, Any]) -> str:
    for message in request.get("messages") or []:
        if message.get("role") in ("system", "developer"):
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


@dataclass
class CoderTurn:
    """What the reuse model saw and chose at one coder request."""

    hits: list[str]
    kind: str


class ReuseModel(ReplayModel):
    """The replay model of bench/replay_model.py with a coder that reuses whenever it can.

    The planner is ReplayModel's (one step per question, then the answer read from the cell's
    output). The coder serves the question given to :meth:`ask`, choosing its cell from the
    hits in the request; a request for another task gets HTTP 500."""

    def __init__(self) -> None:
        super().__init__()  # registers self.coder_reply, this class's
        self.current: Question | None = None
        self.turns: list[CoderTurn] = []

    def ask(self, question: Question) -> None:
        """Serve ``question`` next (one planner step; the coder's cell chosen at request time)."""
        self.current = question
        self.turns = []
        self.add(question.task, [ReplayCell(question.define_cell or question.raw_cell)])

    def choose(self, question: Question, hits: list[str]) -> tuple[str, str]:
        if question.tool_name is None:
            return "raw", question.raw_cell
        if question.tool_name in hits:
            return "reuse", question.reuse_cell
        return "define", question.define_cell

    def coder_reply(self, request: dict[str, Any]) -> str | None:
        question = self.current
        if question is None or question.task not in user_text(request):
            return None
        hits = hit_names(system_text(request))
        kind, code = self.choose(question, hits)
        self.turns.append(CoderTurn(hits=hits, kind=kind))
        return f"```python\n{code.strip()}\n```\n"


# -- the run ----------------------------------------------------------------------------------
def tokens(usage: dict[str, dict[str, int]]) -> tuple[int, int]:
    """(prompt, completion) tokens over every node of a task."""
    prompt = sum(int(u.get("input_tokens", 0) or 0) for u in usage.values())
    completion = sum(int(u.get("output_tokens", 0) or 0) for u in usage.values())
    return prompt, completion


def library_names(services: Services) -> set[str]:
    """Names (and aliases) of the active functions: what the coder can be shown."""
    return {n for r in services.library.list(status="active") for n in [r.name, *r.aliases]}


def run_one(
    model: ReuseModel, question: Question, services: Services, context: Context, thread: str
) -> dict[str, Any]:
    model.ask(question)
    started = time.perf_counter()
    result = run_task(question.task, services=services, thread_id=thread, context=context)
    seconds = time.perf_counter() - started
    prompt, completion = tokens(result.usage)
    turns = list(model.turns)
    failed = [s for s in result.steps if s.get("status") != "ok"]
    error = ""
    if failed:
        lines = sections(failed[-1].get("observation") or "").get("error", "").splitlines()
        error = next((line.strip() for line in reversed(lines) if line.strip()), "")[:200]
    return {
        "error": error,
        "answer": result.answer,
        "match": answers_match(result.answer, question.expected),
        "match_lenient": answers_match(result.answer, question.expected, lenient=True),
        "status": result.status,
        "steps": len(result.steps),
        "step_status": [s.get("status") for s in result.steps],
        "kinds": [t.kind for t in turns],
        "prompt_hits": [t.hits for t in turns],
        "retrieved": [s.get("retrieved", []) for s in result.steps],
        "reused": result.functions_reused,
        "created": result.functions_created,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "seconds": round(seconds, 3),
    }


def warm_up(services: Services) -> None:
    """Build the coder's action lines and the kernel bootstrap before any task: both parse the
    action modules with ``ast``, and on CPython 3.11 two threads parsing at once (the coder's
    first ``action_lines()`` and the scratch-kernel prestart's bootstrap) can fail with
    "SystemError: AST constructor recursion depth mismatch" (seen 2 times in 5 runs of the
    fixture test before this warm-up)."""
    services.action_lines()
    services.kernel_bootstrap()


def run_reuse(
    questions: list[Question], home: Path, *, progress_every: int = 10
) -> list[dict[str, Any]]:
    """Every question with the library (one library for the run), then with it off; one
    record per question."""
    records: list[dict[str, Any]] = []
    os.environ["DYNAGRAPH_HOME"] = str(home)
    with ReuseModel() as model:
        services = Services(replay_settings(model.base_url, home / "library"))
        bare = Services(replay_settings(model.base_url, home / "no-library"))
        names_ever: set[str] = set()
        try:
            for s in (services, bare):  # parse the action modules once, here: see warm_up()
                warm_up(s)
            for q in questions:
                before = library_names(services)
                stored = services.library.get_by_name(q.tool_name) if q.tool_name else None
                lib = run_one(model, q, services, Context(), f"reuse-{q.index}")
                off = run_one(model, q, bare, Context(use_library=False), f"bare-{q.index}")
                names_ever.update(lib["created"])
                stats = services.library.stats()
                kind = lib["kinds"][0] if lib["kinds"] else "none"
                records.append(
                    {
                        "index": q.index,
                        "epoch": q.epoch,
                        "tool_id": q.tool_id,
                        "tool_name": q.tool_name,
                        "expected": q.expected,
                        "kind": kind,
                        "in_library": q.tool_name is not None and q.tool_name in before,
                        "in_hits": q.tool_name is not None
                        and any(q.tool_name in hits for hits in lib["prompt_hits"]),
                        "in_retrieved": q.tool_name is not None
                        and any(q.tool_name in names for names in lib["retrieved"]),
                        # the library's version takes the parameters this question's call passes
                        "same_parameters": None
                        if stored is None
                        else parameters(stored.code, stored.name)
                        == parameters(q.define_cell, q.tool_name),
                        "executor_reused": q.tool_name is not None and q.tool_name in lib["reused"],
                        **{k: v for k, v in lib.items() if k not in ("kinds",)},
                        "no_library": {
                            k: off[k]
                            for k in (
                                "answer",
                                "match",
                                "match_lenient",
                                "status",
                                "steps",
                                "kinds",
                                "prompt_tokens",
                                "completion_tokens",
                                "seconds",
                            )
                        },
                        "library_functions": stats["functions"],
                        "library_total": stats["total"],
                        "library_names": len(names_ever),
                    }
                )
                if progress_every and (q.index + 1) % progress_every == 0:
                    reuses = sum(r["kind"] == "reuse" for r in records)
                    print(
                        f"[{q.index + 1}/{len(questions)}] reuse cells {reuses}, "
                        f"library {stats['functions']}, last {lib['seconds']:.1f} s + "
                        f"{off['seconds']:.1f} s",
                        file=sys.stderr,
                        flush=True,
                    )
        finally:
            services.close()
            bare.close()
    return records


# -- the figures ------------------------------------------------------------------------------
def share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 2) if values else None


def cost(records: list[dict[str, Any]], side: str | None) -> dict[str, Any]:
    """Mean prompt and completion tokens, steps and seconds per task; ``side`` None: the
    library run, "no_library": the run without it."""
    rows = [r[side] if side else r for r in records]
    return {
        "tasks": len(rows),
        "prompt_tokens_mean": mean([r["prompt_tokens"] for r in rows]),
        "completion_tokens_mean": mean([r["completion_tokens"] for r in rows]),
        "prompt_tokens_total": sum(r["prompt_tokens"] for r in rows),
        "completion_tokens_total": sum(r["completion_tokens"] for r in rows),
        "steps_mean": mean([r["steps"] for r in rows]),
        "seconds_median": round(statistics.median([r["seconds"] for r in rows]), 3)
        if rows
        else None,
        "matched": sum(bool(r["match"]) for r in rows),
        "matched_lenient": sum(bool(r["match_lenient"]) for r in rows),
    }


def summarize(records: list[dict[str, Any]], wall_s: float) -> dict[str, Any]:
    with_tool = [r for r in records if r["tool_name"] is not None]
    in_library = [r for r in with_tool if r["in_library"]]
    by_kind = {k: [r for r in records if r["kind"] == k] for k in KINDS}
    answers = {
        kind: {
            "cells": len(rows),
            "matched": sum(bool(r["match"]) for r in rows),
            "matched_lenient": sum(bool(r["match_lenient"]) for r in rows),
            "match_share": share(sum(bool(r["match"]) for r in rows), len(rows)),
            "match_share_lenient": share(sum(bool(r["match_lenient"]) for r in rows), len(rows)),
        }
        for kind, rows in by_kind.items()
    }
    reused = by_kind["reuse"]
    return {
        "questions": len(records),
        "questions_with_tool": len(with_tool),
        "questions_without_tool": len(records) - len(with_tool),
        "in_library": len(in_library),
        "in_library_share": share(len(in_library), len(with_tool)),
        "in_hits_when_in_library": sum(r["in_hits"] for r in in_library),
        "in_hits_share": share(sum(r["in_hits"] for r in in_library), len(in_library)),
        "prompt_hits_agree_with_steps": sum(r["in_hits"] == r["in_retrieved"] for r in records),
        "cells_by_kind": {k: len(v) for k, v in by_kind.items()},
        "reuse_cells_the_executor_counted": sum(r["executor_reused"] for r in reused),
        "reuse_failures": {
            "cells": sum(not r["match"] for r in reused),
            "failed_cells": sum(any(s != "ok" for s in r["step_status"]) for r in reused),
            "library_version_has_other_parameters": sum(
                not r["match"] and r["same_parameters"] is False for r in reused
            ),
            "errors": dict(
                Counter(r["error"].split(":")[0] for r in reused if r["error"]).most_common()
            ),
        },
        "answers_by_kind": answers,
        "with_library": cost(records, None),
        "no_library": cost(records, "no_library"),
        "reuse_questions_with_library": cost(reused, None),
        "reuse_questions_no_library": cost(reused, "no_library"),
        "library_functions_final": records[-1]["library_functions"] if records else 0,
        "library_names_final": records[-1]["library_names"] if records else 0,
        "wall_seconds": round(wall_s, 1),
        "seconds_per_question_both_runs": round(wall_s / len(records), 2) if records else None,
    }


def plot(records: list[dict[str, Any]], path: Path, data_name: str = "") -> Path:
    """Library size after each question, and how many questions so far found their function
    in the library, in the coder's hits, and answered right by reuse."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["index"] + 1 for r in records]

    def running(flag: str) -> list[int]:
        total, out = 0, []
        for r in records:
            total += bool(flag(r)) if callable(flag) else bool(r[flag])
            out.append(total)
        return out

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6.5), dpi=120, sharex=True)
    top.plot(x, [r["library_total"] for r in records], color="tab:grey",
             label="records incl. archived versions")  # fmt: skip
    top.plot(x, [r["library_names"] for r in records], label="names ever stored")
    top.plot(x, [r["library_functions"] for r in records], label="active functions")
    top.set_ylabel("functions in the library")
    top.set_title("Reuse replay: library size and reuse over the questions")
    top.legend(loc="upper left", fontsize=8)
    bottom.plot(x, running("in_library"), label="function already in the library")
    bottom.plot(x, running("in_hits"), label="... and in the coder's hits (reuse cell)")
    bottom.plot(
        x,
        running(lambda r: r["kind"] == "reuse" and r["match"]),
        label="... and the answer matches",
    )
    bottom.set_ylabel("questions so far")
    bottom.set_xlabel(f"questions ({data_name}, epochs in order)")
    bottom.legend(loc="upper left", fontsize=8)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        mark_epochs(ax, records)
    return save_plot(fig, path)


def print_summary(s: dict[str, Any]) -> None:
    a = s["answers_by_kind"]
    lib, off = s["with_library"], s["no_library"]
    ru, ro = s["reuse_questions_with_library"], s["reuse_questions_no_library"]
    rows = [
        ("questions (with a CRAFT tool / without)",
         f"{s['questions']} ({s['questions_with_tool']} / {s['questions_without_tool']})"),
        ("function already in the library", f"{s['in_library']} ({_pct(s['in_library_share'])})"),
        ("... and in the coder's hits at that step",
         f"{s['in_hits_when_in_library']} ({_pct(s['in_hits_share'])})"),
        ("cells: reuse / define / raw GPT-4 code",
         " / ".join(str(s["cells_by_kind"][k]) for k in KINDS)),
        ("reuse cells the executor counted as library calls",
         s["reuse_cells_the_executor_counted"]),
        ("reuse answers not matching / library version with other parameters",
         f"{s['reuse_failures']['cells']} / "
         f"{s['reuse_failures']['library_version_has_other_parameters']}"),
        ("errors of reuse cells", s["reuse_failures"]["errors"]),
        *[
            (f"answers matching via {k} (strict / lenient)",
             f"{a[k]['matched']}/{a[k]['cells']} ({_pct(a[k]['match_share'])}) / "
             f"{a[k]['matched_lenient']} ({_pct(a[k]['match_share_lenient'])})")
            for k in KINDS
        ],
        ("answers matching, library on / off (strict)", f"{lib['matched']} / {off['matched']}"),
        ("prompt tokens per task, library on / off",
         f"{lib['prompt_tokens_mean']} / {off['prompt_tokens_mean']}"),
        ("completion tokens per task, library on / off",
         f"{lib['completion_tokens_mean']} / {off['completion_tokens_mean']}"),
        ("on reuse questions: prompt tokens on / off",
         f"{ru['prompt_tokens_mean']} / {ro['prompt_tokens_mean']}"),
        ("on reuse questions: completion tokens on / off",
         f"{ru['completion_tokens_mean']} / {ro['completion_tokens_mean']}"),
        ("steps per task, library on / off", f"{lib['steps_mean']} / {off['steps_mean']}"),
        ("median seconds per task, library on / off",
         f"{lib['seconds_median']} / {off['seconds_median']}"),
        ("library: active functions / names ever stored at the end",
         f"{s['library_functions_final']} / {s['library_names_final']}"),
        ("wall time (s), both runs", s["wall_seconds"]),
    ]  # fmt: skip
    name = Path(s.get("data", "CRAFT")).name
    print_table(f"Reuse replay of {name} through dynagraph", ["figure", "value"], rows)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a CRAFT-format folder")
    parser.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_LIMIT,
        help=f"the first N questions in file order (default {DEFAULT_LIMIT}; 0: all)",
    )
    add_out_argument(parser, "reuse_replay")
    parser.add_argument("--plot", type=Path, default=None, help="PNG (default: beside --out)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)

    questions, header = load_questions(args.data, args.limit or None)
    out = args.out or default_out("reuse_replay")
    png = args.plot or out.with_name(out.stem + ".png")
    load_start = [round(x, 2) for x in os.getloadavg()]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dynagraph-reuse-") as home:
        records = run_reuse(questions, Path(home), progress_every=0 if args.quiet else 10)
    summary = summarize(records, time.perf_counter() - started)
    summary["data"] = str(args.data)
    summary["limit"] = args.limit
    summary["header"] = header
    plot(records, png, args.data.name)
    try:
        summary["plot"] = png.resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        summary["plot"] = str(png)
    summary["load_average_start"] = load_start
    summary["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    path = save_figures(out.stem, {**summary, "tasks": records}, results_dir=out.parent)
    print_summary(summary)
    print(f"figures: {path}\nplot: {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
