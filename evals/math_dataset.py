r"""MATH (Hendrycks et al.) from local files.

Two layouts:

- the released folder: ``MATH/test/<subject>/<n>.json``, each ``{"problem", "level", "type",
  "solution"}``; ``--data`` may be the root, a split or one subject folder. The expected answer is
  the last ``\boxed{}`` of the solution. Ids are the file paths below ``--data`` without
  ``.json`` (``algebra/1``).
- a JSON Lines file (such as MATH-500): ``problem`` plus ``answer``, or a ``solution`` to take
  the boxed answer from; the id is ``unique_id`` or ``id`` when present, else the line number.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dynagraph.evals.math_answers import last_boxed, math_equal
from dynagraph.evals.tasks import EvalDataError, EvalTask

ANSWER_FORMAT = (
    "Finish with the final answer only, exact and in simplest form (LaTeX is fine, e.g. "
    "\\frac{3}{4} or 2\\sqrt{5}); no units, no explanation."
)


def math_prompt(problem: str) -> str:
    return f"{problem.strip()}\n\n{ANSWER_FORMAT}"


def _task(row: dict[str, Any], task_id: str, where: str) -> EvalTask:
    problem = row.get("problem")
    if not isinstance(problem, str):
        raise EvalDataError(f"{where}: no 'problem' text")
    expected = row.get("answer")
    if expected is None:
        solution = row.get("solution")
        expected = last_boxed(solution) if isinstance(solution, str) else None
    if expected is None:
        raise EvalDataError(f"{where}: no 'answer' and no \\boxed{{}} answer in 'solution'")
    level = row.get("level")
    return EvalTask(
        id=task_id,
        question=problem,
        prompt=math_prompt(problem),
        expected=str(expected),
        level=None if level is None else str(level),
        meta={"subject": row.get("type") or row.get("subject")},
    )


def _load_folder(root: Path) -> list[EvalTask]:
    files = sorted(root.rglob("*.json"), key=lambda p: _natural_key(p.relative_to(root)))
    if not files:
        raise EvalDataError(f"no MATH problem files (*.json) under {root}")
    tasks = []
    for path in files:
        try:
            row = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise EvalDataError(f"{path}: not JSON ({exc.msg})") from exc
        task_id = path.relative_to(root).with_suffix("").as_posix()
        tasks.append(_task(row, task_id, str(path)))
    return tasks


def _natural_key(path: Path) -> list[Any]:
    """``algebra/2`` before ``algebra/10``."""
    return [int(p) if p.isdigit() else p for p in path.with_suffix("").parts]


def _load_jsonl(path: Path) -> list[EvalTask]:
    tasks = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EvalDataError(f"{path}:{lineno}: not JSON ({exc.msg})") from exc
            task_id = str(row.get("unique_id") or row.get("id") or lineno)
            tasks.append(_task(row, task_id, f"{path}:{lineno}"))
    return tasks


def load_math(data: str | Path) -> list[EvalTask]:
    """Every MATH problem under ``data`` (a folder of problem files, or a JSON Lines file)."""
    path = Path(data).expanduser()
    if path.is_dir():
        return _load_folder(path)
    if path.is_file():
        if path.suffix == ".json":  # a single problem file
            return _load_folder_file(path)
        return _load_jsonl(path)
    raise EvalDataError(f"MATH data not found at {path}")


def _load_folder_file(path: Path) -> list[EvalTask]:
    try:
        row = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise EvalDataError(f"{path}: not JSON ({exc.msg})") from exc
    return [_task(row, path.stem, str(path))]


def score_math(answer: str | None, task: EvalTask) -> bool:
    return math_equal(answer, task.expected)
