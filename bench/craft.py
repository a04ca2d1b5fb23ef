"""Reading any CRAFT-format toolset (the layout of ``../shared/data/craft-tabmwp``, see its
README), for every bench that replays one: ``epoch_*/1_raw_specific_solutions.json`` (JSON
Lines), ``epoch_*/4_valid_tools.csv`` and the final ``5_deduplicated_tools.csv``.

Nothing here assumes TabMWP: a row's ``table`` is optional (a task is its question, plus the
table when there is one), and the header CRAFT prepended to its tools when it ran them is taken
from the data (``header.py`` in the folder) or else inferred from the imports the data's own
code makes (:func:`probe_header`).
"""

from __future__ import annotations

import ast
import csv
import importlib.util
import json
import re
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

RAW_FILE = "1_raw_specific_solutions.json"
VALID_FILE = "4_valid_tools.csv"
DEDUP_FILE = "5_deduplicated_tools.csv"
HEADER_FILE = "header.py"
_PYTHON_BLOCK = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL)


def epoch_files(data: Path, name: str) -> list[Path]:
    """``data/epoch_*/name`` in epoch order (epoch_2 before epoch_10)."""
    found = sorted(data.glob(f"epoch_*/{name}"), key=lambda p: int(p.parent.name.split("_")[1]))
    if not found:
        raise FileNotFoundError(f"no epoch_*/{name} under {data}")
    return found


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def task_text(row: dict[str, Any]) -> str:
    """The task as the agent gets it: the question, and the table when the row has one."""
    question = str(row.get("question") or "").strip()
    table = str(row.get("table") or "").strip()
    return f"{question}\n\nTable:\n{table}" if table else question


def python_block(text: str) -> str:
    """The first fenced python block of ``text``, or the whole text when it has no fence."""
    match = _PYTHON_BLOCK.search(text or "")
    return (match.group(1) if match else text or "").strip()


def _top_imports(source: str) -> list[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    return [ast.unparse(s) for s in tree.body if isinstance(s, ast.Import | ast.ImportFrom)]


def _importable(line: str) -> bool:
    node = ast.parse(line).body[0]
    module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
    if not module or getattr(node, "level", 0):
        return False
    try:
        return importlib.util.find_spec(module.split(".")[0]) is not None
    except (ImportError, ValueError):
        return False


def inferred_header(sources: Iterable[str]) -> str:
    """Every distinct top-level import the sources make, most frequent first, without the ones
    whose module is not installed here (the rows using them fail as they would for a user)."""
    sources = list(sources)
    counts = Counter(line for source in sources for line in dict.fromkeys(_top_imports(source)))
    counts.update(f"import {name}" for source in sources for name in _unimported_modules(source))
    lines = [i for i, _ in counts.most_common() if "__future__" not in i and _importable(i)]
    return "".join(f"{line}\n" for line in lines)


def _unimported_modules(source: str) -> set[str]:
    """Standard-library modules the source uses by name without importing them (``math.sqrt``
    in a tool that CRAFT ran under a header importing math)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    bound = header_names(source) | {
        n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    }
    used = {
        n.value.id
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
    }
    return {name for name in used - bound if name in sys.stdlib_module_names}


def probe_header(data: Path, sources: Iterable[str]) -> str:
    """The header CRAFT's tools ran under: ``data/header.py`` when the data says it, else the
    imports of the data's own code (:func:`inferred_header`)."""
    given = data / HEADER_FILE
    if given.is_file():
        return given.read_text(encoding="utf-8").rstrip("\n") + "\n"
    return inferred_header(sources)


def header_names(header: str) -> set[str]:
    """The names a header binds (``pd``, ``np``, ``Counter``...)."""
    try:
        tree = ast.parse(header)
    except SyntaxError:
        return set()
    return {
        alias.asname or alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
        if alias.name != "*"
    }


def toolset_size(data: Path) -> int | None:
    """How many tools CRAFT's own deduplication kept (``5_deduplicated_tools.csv``)."""
    path = data / DEDUP_FILE
    return len(read_csv(path)) if path.is_file() else None
