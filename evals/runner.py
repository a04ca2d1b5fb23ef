"""Run a benchmark: solve each task, score it, append one JSON line per task, resume later.

The runner knows nothing about the agent: it calls ``solve(prompt)``, which returns a
``TaskResult`` (``graphs.run``) or anything with the same fields (attributes or dict keys:
``answer``, ``status``, ``error``, ``steps``, ``usage``, ``functions_created``,
``functions_reused``, ``thread_id``). Production passes a closure over ``run_task``; tests pass
a small function.

Results are JSON Lines, one record per task, flushed as each task ends, so an interrupted run
loses at most the task in flight. On a rerun with the same file, tasks already recorded are
skipped, except those recorded as ``error`` (a crash, not an answer), which are tried again; the
newest record of an id wins. ``run_info`` (benchmark, library on/off) is stored in every record
and must match the file's, so results with and without the library are never mixed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

from dynagraph.evals.progress import ProgressBar
from dynagraph.evals.tasks import EvalDataError, EvalTask

Solver = Callable[[str], Any]
Scorer = Callable[[str | None, EvalTask], bool]


def _field(result: Any, name: str, default: Any = None) -> Any:
    if isinstance(result, Mapping):
        return result.get(name, default)
    return getattr(result, name, default)


def step_calls_library(step: Mapping[str, Any]) -> bool:
    """A step counts toward coverage when its cell called at least one library function."""
    return bool(step.get("reused"))


def task_record(
    task: EvalTask, result: Any, correct: bool, seconds: float, run_info: Mapping[str, Any]
) -> dict[str, Any]:
    """The JSON record of one solved task (see the module docstring for the fields' meaning)."""
    steps = list(_field(result, "steps", None) or [])
    library_steps = sum(1 for s in steps if step_calls_library(s))
    answer = _field(result, "answer")
    return {
        **run_info,
        "id": task.id,
        "level": task.level,
        "question": task.question,
        "expected": task.expected,
        "answer": None if answer is None else str(answer),
        "correct": bool(correct),
        "status": str(_field(result, "status", "done")),
        "error": _field(result, "error"),
        "steps": len(steps),
        "library_steps": library_steps,
        "coverage": library_steps / len(steps) if steps else None,
        "tokens": {
            node: dict(counts) for node, counts in (_field(result, "usage", None) or {}).items()
        },
        "functions_created": list(_field(result, "functions_created", None) or []),
        "functions_reused": list(_field(result, "functions_reused", None) or []),
        "seconds": round(seconds, 3),
        "thread_id": _field(result, "thread_id"),
    }


def error_record(
    task: EvalTask, exc: BaseException, seconds: float, run_info: Mapping[str, Any]
) -> dict[str, Any]:
    record = task_record(task, {"status": "error"}, False, seconds, run_info)
    record["error"] = f"{type(exc).__name__}: {exc}"
    return record


def read_results(path: str | Path) -> dict[str, dict[str, Any]]:
    """The newest record of every id in a results file ({} when it does not exist)."""
    path = Path(path)
    records: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return records
    if not path.is_file():  # a folder; /dev/full or /dev/stdout would be read without end
        raise EvalDataError(f"the results file {path} is not a regular file: choose another --out")
    try:
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    if lineno == _line_count(path):  # a line cut short by a crash: ignore it
                        continue
                    raise EvalDataError(f"{path}:{lineno}: not a JSON record") from None
                if not isinstance(record, dict) or "id" not in record:
                    raise EvalDataError(f"{path}:{lineno}: not an eval result (no id)")
                records[str(record["id"])] = record
    except UnicodeDecodeError:
        raise EvalDataError(
            f"{path} is not a results file (not UTF-8): choose another --out"
        ) from None
    except OSError as exc:
        raise EvalDataError(f"cannot read the results file {path}: {exc.strerror or exc}") from None
    return records


def _line_count(path: Path) -> int:
    with path.open(encoding="utf-8") as fh:
        return sum(1 for _ in fh)


def _check_run_info(
    path: Path, records: Mapping[str, Mapping[str, Any]], run_info: Mapping[str, Any]
) -> None:
    for record in records.values():
        if "benchmark" in run_info and "benchmark" not in record:
            raise EvalDataError(
                f"{path} holds results that are not an eval's (no benchmark; `dynagraph batch` "
                "writes such lines): use another --out file"
            )
        for key, value in run_info.items():
            if key in record and record[key] != value:
                raise EvalDataError(
                    f"{path} holds results with {key}={record[key]!r}, this run has "
                    f"{key}={value!r}: use another --out file"
                )


def _check_writable(out: Path) -> None:
    """EvalDataError (one line) when ``out`` could not be appended to or created, checked
    without creating anything."""
    if out.exists():
        ok = out.is_file() and os.access(out, os.W_OK)
    else:
        folder = next((p for p in out.absolute().parents if p.exists()), Path("/"))
        ok = folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)
    if not ok:
        raise EvalDataError(f"cannot write the results file {out}: choose another --out")


def _open_results(out: Path) -> TextIO:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return out.open("a", encoding="utf-8")
    except OSError as exc:
        why = exc.strerror or exc
        raise EvalDataError(f"cannot write the results file {out}: {why}") from exc


def run_eval(
    tasks: Iterable[EvalTask],
    solve: Solver,
    score: Scorer,
    out_path: str | Path,
    *,
    limit: int | None = None,
    run_info: Mapping[str, Any] | None = None,
    abort_on: tuple[type[BaseException], ...] = (),
    progress_stream: TextIO | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> list[dict[str, Any]]:
    """Solve and score the first ``limit`` tasks not yet in ``out_path``; return the records
    of all the selected tasks (earlier runs' and this one's), in task order.

    An exception from ``solve`` is recorded as an ``error`` task and the run goes on, unless
    it is one of ``abort_on`` (a missing API key fails every task alike): then it propagates.
    ``out_path`` is only ever appended to, and only created with the first record: a run
    aborted before it leaves no empty file behind.
    Progress goes to ``progress_stream`` (none when it is None).
    """
    out = Path(out_path)
    info = dict(run_info or {})
    selected = list(tasks)[: limit if limit is not None and limit >= 0 else None]
    records = read_results(out)
    _check_run_info(out, records, info)
    todo = [t for t in selected if records.get(t.id, {}).get("status", "error") == "error"]
    todo_ids = {t.id for t in todo}
    bar = ProgressBar(len(selected), stream=progress_stream)
    bar.done = len(selected) - len(todo)
    bar.correct = sum(1 for t in selected if t.id not in todo_ids and records[t.id].get("correct"))
    _check_writable(out)  # before any task: a run must not solve tasks it cannot record
    fh: TextIO | None = None  # opened (for appending) with the first record: see below
    try:
        for task in todo:
            started = clock()
            try:
                result = solve(task.prompt)
            except abort_on:
                raise
            except Exception as exc:
                record = error_record(task, exc, clock() - started, info)
            else:
                answer = _field(result, "answer")
                correct = bool(score(None if answer is None else str(answer), task))
                record = task_record(task, result, correct, clock() - started, info)
            if fh is None:  # a run aborted before its first record leaves no empty file
                fh = _open_results(out)
            fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
            fh.flush()
            records[task.id] = record
            note = f"{task.id}: {record['status']} {record['seconds']:.1f}s"
            bar.advance(correct=record["correct"], note=note)
    finally:
        if fh is not None:
            fh.close()
        bar.close()
    return [records[t.id] for t in selected if t.id in records]
