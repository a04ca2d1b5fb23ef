"""TabMWP (table math word problems, Lu et al. 2023) from local files.

Two layouts:

- the official release: ``problems_<split>.json``, one object mapping a problem id to
  ``{"question", "table" (pipe-separated text), "table_title", "choices" (list or null),
  "answer", "unit", "ans_type", "grade", ...}``. ``--data`` may be that file or its folder
  (``problems_test.json`` is taken when several splits are there).
- CRAFT's CSVs (``question``, ``table``, ``answer``, ``level``, ``tool_id``): a CSV file, or the
  craft-tabmwp folder, whose ``epoch_*/2_valid_specific_solutions.csv`` hold its 500 problems in
  order.

Scoring follows TabMWP's own evaluation: a numeric answer (``1,000``, ``$5.20``, ``3/4``) is
compared as a number rounded to 3 decimals; text is compared lowercased and trimmed, with the
unit and trailing punctuation removed.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

from dynagraph.evals.tasks import EvalDataError, EvalTask

ANSWER_FORMAT = (
    "Finish with the final answer only: a number (digits, no units) or, when choices are "
    "given, the chosen option's text."
)
_NUMBER = re.compile(r"[-+]?[\d,./]+")


def tabmwp_prompt(
    question: str, table: str, *, title: str = "", choices: list[str] | None = None
) -> str:
    parts = [f"Table: {title.strip()}" if title.strip() else "Table:", table.strip(), ""]
    parts.append(f"Question: {question.strip()}")
    if choices:
        parts.append("Choices: " + "; ".join(str(c) for c in choices))
    parts += ["", ANSWER_FORMAT]
    return "\n".join(parts)


# -- scoring ------------------------------------------------------------------------------------
def normalize_tabmwp(text: Any, unit: str | None = None) -> str:
    """A number as its value rounded to 3 decimals (``"1,000.50"`` -> ``"1000.5"``); text
    lowercased and trimmed, without ``unit`` and trailing punctuation."""
    s = str(text).strip() if text is not None else ""
    s = re.sub(r"^\$", "", s).strip()
    s = re.sub(r"[,./]$", "", s)
    if unit and s.lower().endswith(unit.lower()):
        s = s[: -len(unit)].strip()
    if _NUMBER.fullmatch(s) and any(ch.isdigit() for ch in s):
        value = _number_value(s.replace(",", ""))
        if value is not None:
            return _format_number(value)
    if unit:
        s = s.replace(unit, "").strip()
    return re.sub(r"\s+", " ", s).strip().rstrip(".").lower()


def _number_value(s: str) -> float | None:
    try:
        if "/" in s:
            top, bottom = s.split("/", 1)
            return float(top) / float(bottom)
        return float(s)
    except (ValueError, ZeroDivisionError):
        return None


def _format_number(value: float) -> str:
    rounded = round(value, 3)
    if rounded == int(rounded):
        return str(int(rounded))
    return repr(rounded)


def tabmwp_equal(answer: str | None, expected: str, unit: str | None = None) -> bool:
    if answer is None:
        return False
    return normalize_tabmwp(answer, unit) == normalize_tabmwp(expected, unit)


def score_tabmwp(answer: str | None, task: EvalTask) -> bool:
    return tabmwp_equal(answer, task.expected, task.meta.get("unit"))


# -- loading ------------------------------------------------------------------------------------
def _load_official(path: Path) -> list[EvalTask]:
    try:
        problems = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise EvalDataError(f"{path}: not JSON ({exc.msg})") from exc
    if not isinstance(problems, dict):
        raise EvalDataError(f"{path}: expected an object mapping problem ids to problems")
    tasks = []
    for pid, row in problems.items():
        if not isinstance(row, dict) or "question" not in row or "answer" not in row:
            raise EvalDataError(f"{path}: problem {pid} lacks 'question' or 'answer'")
        choices = row.get("choices") or None
        if choices is not None and not isinstance(choices, list):  # "abc" became "a; b; c"
            raise EvalDataError(f"{path}: problem {pid}: 'choices' must be a list or null")
        grade = row.get("grade")
        tasks.append(
            EvalTask(
                id=str(pid),
                question=str(row["question"]),
                prompt=tabmwp_prompt(
                    str(row["question"]),
                    str(row.get("table") or ""),
                    title=str(row.get("table_title") or ""),
                    choices=choices,
                ),
                expected=str(row["answer"]),
                level=None if grade is None else str(grade),
                meta={
                    "unit": row.get("unit") or None,
                    "ans_type": row.get("ans_type"),
                    "choices": choices,
                    "table": row.get("table"),
                },
            )
        )
    return tasks


def _load_csv(path: Path, id_prefix: str = "") -> list[EvalTask]:
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"question", "table", "answer"} - set(reader.fieldnames or ())
        if missing:
            raise EvalDataError(f"{path}: missing columns {', '.join(sorted(missing))}")
        tasks = []
        for index, row in enumerate(reader):
            task_id = row.get("tool_id") or str(index)
            tasks.append(
                EvalTask(
                    id=f"{id_prefix}{task_id}",
                    question=row["question"],
                    prompt=tabmwp_prompt(row["question"], row["table"]),
                    expected=row["answer"],
                    level=row.get("level") or None,
                    meta={"table": row["table"], "source": path.name},
                )
            )
    return tasks


def _epoch_number(path: Path) -> int:
    match = re.fullmatch(r"epoch_(\d+)", path.parent.name)
    return int(match.group(1)) if match else -1


def _load_folder(root: Path) -> list[EvalTask]:
    craft = sorted(root.glob("epoch_*/2_valid_specific_solutions.csv"), key=_epoch_number)
    if craft:
        return [task for path in craft for task in _load_csv(path)]
    official = sorted(root.glob("problems_*.json"))
    if not official:
        raise EvalDataError(
            f"no TabMWP data in {root}: expected problems_<split>.json (official release) or "
            "epoch_*/2_valid_specific_solutions.csv (CRAFT)"
        )
    chosen = [p for p in official if p.name == "problems_test.json"] or official
    if len(chosen) > 1:
        names = ", ".join(p.name for p in official)
        raise EvalDataError(f"several TabMWP splits in {root} ({names}): pass one file to --data")
    return _load_official(chosen[0])


def load_tabmwp(data: str | Path) -> list[EvalTask]:
    """Every TabMWP problem ``data`` designates (see the module docstring for the layouts)."""
    path = Path(data).expanduser()
    if path.is_dir():
        return _load_folder(path)
    if path.suffix == ".json":
        return _load_official(path)
    if path.suffix == ".csv":
        return _load_csv(path)
    if not path.exists():
        raise EvalDataError(f"TabMWP data not found at {path}")
    raise EvalDataError(f"{path}: expected a problems_<split>.json or a CRAFT .csv")
