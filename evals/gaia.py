"""GAIA from a local copy of the gated Hugging Face dataset (gaia-benchmark/GAIA).

GAIA cannot be fetched at run time (it is gated, and these machines are offline), so the user
downloads it and points ``--data`` at one of:

- the snapshot root (holding ``2023/validation/...``; the validation split is used, since the
  test split's answers are private),
- a split folder (``2023/validation``) holding ``metadata.jsonl`` or ``metadata.parquet``,
- a metadata file itself.

Rows have ``task_id``, ``Question``, ``Level``, ``Final answer`` and ``file_name`` (an attachment
stored next to the metadata file; parquet copies also carry ``file_path``, relative to the
snapshot root). Reading parquet needs pandas with pyarrow.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dynagraph.evals.gaia_scorer import question_scorer
from dynagraph.evals.tasks import EvalDataError, EvalTask

ANSWER_FORMAT = (
    "Finish with the final answer only: a number, as few words as possible, or a comma "
    "separated list of numbers and/or strings. Write numbers with digits and without units, "
    "commas or percent signs unless asked; write strings without articles or abbreviations."
)
_METADATA_NAMES = ("metadata.jsonl", "metadata.parquet")


def find_metadata(data: str | Path, split: str = "validation") -> Path:
    """The metadata file ``data`` designates (see the module docstring for the layouts)."""
    path = Path(data).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise EvalDataError(f"GAIA data not found at {path}")
    for folder in (path, path / "2023" / split, path / split):
        for name in _METADATA_NAMES:
            if (folder / name).is_file():
                return folder / name
    raise EvalDataError(
        f"no GAIA metadata.jsonl or metadata.parquet in {path} (nor in {path}/2023/{split}); "
        "point --data at the downloaded gaia-benchmark/GAIA folder"
    )


def _read_rows(metadata: Path) -> list[dict[str, Any]]:
    if metadata.suffix == ".parquet":
        try:
            import pandas as pd

            frame = pd.read_parquet(metadata)
        except ImportError as exc:
            raise EvalDataError(
                f"reading {metadata} needs pandas and pyarrow (pip install pandas pyarrow), "
                "or use the metadata.jsonl copy"
            ) from exc
        return [
            {k: (None if _is_missing(v) else v) for k, v in row.items()}
            for row in frame.to_dict(orient="records")
        ]
    rows = []
    with metadata.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise EvalDataError(f"{metadata}:{lineno}: not JSON ({exc.msg})") from exc
    return rows


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _attachment(row: dict[str, Any], metadata: Path) -> tuple[str, Path | None]:
    """(file name, resolved path or None when the file is not on disk)."""
    name = str(row.get("file_name") or "").strip()
    if not name:
        return "", None
    candidates = [metadata.parent / name]
    rel = str(row.get("file_path") or "").strip()
    if rel:
        candidates += [parent / rel for parent in metadata.parents]
    for candidate in candidates:
        if candidate.is_file():
            return name, candidate.resolve()
    return name, None


def gaia_prompt(question: str, file_name: str, file_path: Path | None) -> str:
    parts = [question.strip()]
    if file_path is not None:
        parts.append(f"The attached file is at: {file_path}")
    elif file_name:
        parts.append(f"(The task refers to an attached file, {file_name}, which is not available.)")
    parts.append(ANSWER_FORMAT)
    return "\n\n".join(parts)


def load_gaia(data: str | Path, *, split: str = "validation") -> list[EvalTask]:
    """Every GAIA question of the designated metadata, in file order."""
    metadata = find_metadata(data, split)
    tasks = []
    for index, row in enumerate(_read_rows(metadata)):
        try:
            task_id = str(row["task_id"])
            question = str(row["Question"])
        except KeyError as exc:
            raise EvalDataError(f"{metadata}: row {index + 1} lacks {exc}") from exc
        answer = row.get("Final answer")
        if answer is None or str(answer).strip() in ("", "?"):
            # scored against "" every answer was wrong, silently (an attack)
            raise EvalDataError(
                f"{metadata}: row {index + 1} ({task_id}) has no final answer to score against "
                "(the test split's answers are not public: use the validation split)"
            )
        file_name, file_path = _attachment(row, metadata)
        level = row.get("Level")
        tasks.append(
            EvalTask(
                id=task_id,
                question=question,
                prompt=gaia_prompt(question, file_name, file_path),
                expected=str(answer),
                level=None if level is None else str(level),
                meta={
                    "file_name": file_name,
                    "file_path": str(file_path) if file_path else None,
                    "file_missing": bool(file_name) and file_path is None,
                },
            )
        )
    return tasks


def score_gaia(answer: str | None, task: EvalTask) -> bool:
    return question_scorer(answer, task.expected)
