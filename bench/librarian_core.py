"""What the librarian bench's figures share: CRAFT-format rows, the probe header, kernels and
probes recorded the way the agent records them (bench/librarian.py runs the figures).

The header CRAFT ran its tools under is the data's (``header.py``) or inferred from the data's
own imports (bench/craft.py: ``probe_header``), never TabMWP's fixed one; :func:`use_header`
sets it for a run.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dynagraph.tools.codeparse import extract_functions  # noqa: E402
from dynagraph.tools.kernel import KernelSession  # noqa: E402
from dynagraph.tools.kernel import probes as probe_codec  # noqa: E402
from dynagraph.tools.librarian.candidate import Candidate  # noqa: E402
from dynagraph.tools.library import SqliteLibrary  # noqa: E402

from bench.craft import (  # noqa: E402
    VALID_FILE,
    epoch_files,
    probe_header,
    python_block,
    read_csv,
    task_text,
)

#: The header prepended to every definition of the current run (:func:`use_header`).
HEADER = ""


def use_header(header: str) -> None:
    global HEADER
    HEADER = header


# -- data -------------------------------------------------------------------------------------------
@dataclass
class Row:
    epoch: int
    index: int
    question: str
    table: str
    code: str
    api_call: str
    tool: str
    tool_call: str
    tool_probes: list[dict[str, Any]] = field(default_factory=list)
    code_probes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def task(self) -> str:
        return task_text({"question": self.question, "table": self.table})

    @property
    def api_block(self) -> str:
        """The call code of ``api_call``: its python block (epoch 0 wraps it in prose), else the
        whole field (later epochs hold bare code)."""
        return python_block(self.api_call)


def load_rows(data: Path, limit: int | None = None) -> list[Row]:
    """The rows of ``epoch_*/4_valid_tools.csv`` (a ``table`` column is optional); sets the
    run's header from the data (every row's code and tools, not only the first ``limit``)."""
    rows = []
    for path in epoch_files(data, VALID_FILE):
        epoch = int(path.parent.name.split("_")[1])
        for i, r in enumerate(read_csv(path)):
            rows.append(
                Row(epoch, i, r["question"], r.get("table") or "", r["code"], r["api_call"],
                    r["tool"], r["tool_call"])
            )  # fmt: skip
    use_header(probe_header(data, [s for r in rows for s in (r.code, r.tool)]))
    return rows[:limit] if limit else rows


def function_of(source: str) -> Any:
    """The last top-level function of ``HEADER + source`` (imports reduced to what it uses)."""
    found = extract_functions(HEADER + source)
    return found[-1] if found else None


def candidate_of(source: str, probes: list[dict[str, Any]], **changes: Any) -> Candidate | None:
    fn = function_of(source)
    if fn is None:
        return None
    cand = Candidate.from_function(fn, probes)
    for key, value in changes.items():
        setattr(cand, key, value)
    return cand


# -- kernels and probes -----------------------------------------------------------------------------
def bootstrapped_kernel(folder: Path) -> KernelSession:
    """A kernel like a task kernel for this data: the probe recorder (no actions needed)."""
    session = KernelSession(folder, memory_limit_mb=2048, bootstrap=probe_codec.BOOTSTRAP)
    session.start()  # the session runs the bootstrap, again after every restart
    return session


def record_probes(
    session: KernelSession, definition: str, call: str, name: str, timeout: float = 20.0
) -> list[dict[str, Any]]:
    """Define, call, fetch: the calls the probe recorder saw to ``name``."""
    probe_codec.fetch_probes(session)  # start clean
    if not session.execute(HEADER + definition, timeout=timeout).ok():
        return []
    session.execute(call, timeout=timeout)  # a failing call still leaves the probes made
    recorded, _ = probe_codec.fetch_probes(session)
    return recorded.get(name, [])


def collect_probes(rows: list[Row], folder: Path) -> dict[str, float]:
    """Fill each row's tool and code probes; one kernel for all (namespaces do not matter:
    each definition is run again before its call)."""
    began = time.perf_counter()
    session = bootstrapped_kernel(folder)
    try:
        for row in rows:
            tool, code = function_of(row.tool), function_of(row.code)
            if tool is not None:
                row.tool_probes = record_probes(session, row.tool, row.tool_call, tool.name)
            if code is not None and row.api_block:
                row.code_probes = record_probes(session, row.code, row.api_block, code.name)
    finally:
        session.shutdown()
    return {
        "seconds": round(time.perf_counter() - began, 1),
        "tools_with_probes": sum(bool(r.tool_probes) for r in rows),
        "codes_with_probes": sum(bool(r.code_probes) for r in rows),
        "rows": len(rows),
    }


# -- shared plumbing --------------------------------------------------------------------------------
def fresh_library(folder: Path, embedder: Any) -> SqliteLibrary:
    return SqliteLibrary(Path(tempfile.mkdtemp(dir=folder)) / "library.db", embedder)


def judged_same(decision: Any) -> bool:
    """The cascade found the candidate behaves like a stored function (kept or replaced)."""
    if decision.action == "duplicate":
        return True
    return decision.action in ("new_version", "supersedes") and "same results" in decision.reason
