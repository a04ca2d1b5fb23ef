#!/usr/bin/env python
"""Executor figures: kernel round trips, task start cold vs pooled, cells/s, defining library
functions, and concurrent tasks per second.

Why: the executor wraps jupyter_client with its own receive loop (alive polling, output caps,
interrupts), bootstraps every kernel, and runs many tasks at once from a pool of warm kernels;
these figures say what each of those costs on this machine, measured in one run.

1. Round trip of a trivial cell (``pass``): ``KernelSession.execute`` vs a bare jupyter_client
   ``BlockingKernelClient.execute_interactive``, each against its own kernel started in this run
   (both over ipc, as KernelSession uses), ``--round-trips`` each (median; the ratio); the bare
   one again with ``--Kernel._execute_sleep=0``, as KernelSession's kernels run.
1b. The withdrawn launcher patch (ipykernel 7 without its shell-channel thread: it broke cells
   with a top-level ``await``, tools/kernel/kernel_side/launcher.py), A/B in interleaved
   rounds: ``KernelSession.execute`` of bench/peers.py's cell (``x = sum(range(1000));
   print(x)``) with the launcher as shipped (stock ipykernel start) and with the patch.
   ``--launcher-rounds`` rounds of a fresh kernel per variant, median of ``--round-trips``
   cells each.
2. Task start: the time from a task needing a kernel to that kernel being ready for its first
   cell: cold (``Services.kernel_session(...).start()``: ipykernel start + bootstrap) vs pooled
   (``KernelPool.take``: a warm kernel moves into the task's directory; its session ran the
   bootstrap while it was warmed). Median.
3. Short cells per second: ``x = i`` cells in sequence through ``KernelSession``.
4. Defining 50 and 500 library functions in a warm kernel, each in its own silent cell as the
   executor defines library functions: real CRAFT TabMWP tools (``epoch_*/4_valid_tools.csv``,
   ``tool`` column, 341 of them) under the header its README names (pandas, numpy, math,
   Counter); past 341 the tools repeat under suffixed names. The probe recorder is installed
   (it wraps every top-level def, as in task kernels).
5. N = 1, 2, 4 concurrent tasks with the loopback stub model (``tests/support/openai_stub.py``):
   ``run_batch`` over ``--tasks`` one-step tasks, wall time including the pool's warm-up,
   tasks per second. Two kinds: cells that define no function (the agent loop and kernels
   only) and cells that define one (the librarian verifies it in a scratch kernel, holding the
   library's admission lock).

Usage: ``python bench/executor.py [--round-trips 200] [--starts 7] [--tasks 8]
[--sections round_trip launcher ...]``.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dynagraph.graphs.batch import BatchTask, run_batch  # noqa: E402
from dynagraph.graphs.services import Services  # noqa: E402
from dynagraph.graphs.settings import load_settings  # noqa: E402
from dynagraph.tools.kernel import KernelPool, KernelSession, kernel_side, launch, probes  # noqa: E402

from bench.common import (  # noqa: E402
    SHARED_DATA,
    machine_line,
    median,
    print_table,
    save_figures_to,
)
from tests.support.config import (  # noqa: E402
    coder_cell,
    planner_answer,
    planner_step,
    write_stub_config,
)
from tests.support.openai_stub import StubLLM  # noqa: E402

CRAFT = SHARED_DATA / "craft-tabmwp"
CRAFT_HEADER = (
    "import pandas as pd\nimport numpy as np\nimport math\nfrom collections import Counter\n"
)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


# -- 1. round trips -----------------------------------------------------------------------------
def timed_cells(session: KernelSession, code: str, count: int, stdout: str = "") -> list[float]:
    """Seconds per ``session.execute(code)``, ``count`` times after 20 untimed ones; the last
    run must succeed and print exactly ``stdout`` (a kernel that loses output fails here)."""
    for _ in range(20):
        session.execute(code)
    times = []
    for _ in range(count):
        began = time.perf_counter()
        result = session.execute(code)
        times.append(time.perf_counter() - began)
    assert result.ok() and result.stdout == stdout, result.to_observation()
    return times


def round_trips(count: int, workdir: Path) -> dict[str, Any]:
    with KernelSession(workdir / "session") as session:
        ours = timed_cells(session, "pass", count)

    bare = bare_round_trips(count, workdir, [])
    bare_no_sleep = bare_round_trips(count, workdir, ["--Kernel._execute_sleep=0"])
    return {
        "count": count,
        "kernel_session_median_ms": ms(median(ours)),
        "bare_execute_interactive_median_ms": ms(median(bare)),
        "bare_without_execute_sleep_median_ms": ms(median(bare_no_sleep)),
        "ratio": round(median(ours) / median(bare), 2),
    }


def bare_round_trips(count: int, workdir: Path, flags: list[str]) -> list[float]:
    """Seconds per ``execute_interactive("pass")`` against a plain ipykernel started with
    ``flags`` (``--Kernel._execute_sleep=0``: without the 0.5 ms sleep ipykernel makes after
    every cell, which KernelSession's kernels run without, tools/kernel/launch.py)."""
    from jupyter_client.manager import KernelManager

    km = KernelManager(transport="ipc", connection_file=str(workdir / "bare-kernel.json"))
    km.start_kernel(cwd=str(workdir), extra_arguments=flags)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        for _ in range(20):
            kc.execute_interactive("pass", timeout=30)
        times = []
        for _ in range(count):
            began = time.perf_counter()
            kc.execute_interactive("pass", timeout=30)
            times.append(time.perf_counter() - began)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return times


# -- 1b. the withdrawn launcher patch ----------------------------------------------------------
PEERS_CELL = "x = sum(range(1000)); print(x)"
LAUNCH = "kernelapp.launch_new_instance()"
#: ipykernel 7 without its shell-channel thread (withdrawn: breaks top-level ``await``)
WITHOUT_SHELL_THREAD = """_stock_init_control = kernelapp.IPKernelApp.init_control


def _init_control_without_shell_thread(self, context):
    _stock_init_control(self, context)
    self.shell_channel_thread = None


kernelapp.IPKernelApp.init_control = _init_control_without_shell_thread
"""


class _LauncherText:
    """Stands in for ``launch.kernel_side`` so that kernels start from another launcher text."""

    def __init__(self, text: str) -> None:
        self.text = text

    def source(self, module: str) -> str:
        return self.text if module == "launcher" else kernel_side.source(module)


def launcher_variants() -> dict[str, str]:
    shipped = kernel_side.source("launcher")
    assert shipped.count(LAUNCH) == 1, "the launcher no longer ends with ipykernel's start"
    return {
        "as shipped (stock ipykernel start)": shipped,
        "without the shell-channel thread (withdrawn)": shipped.replace(
            LAUNCH, WITHOUT_SHELL_THREAD + LAUNCH
        ),
    }


def launcher_ab(rounds: int, count: int, workdir: Path) -> dict[str, Any]:
    variants = launcher_variants()
    medians: dict[str, list[float]] = {name: [] for name in variants}
    shipped_module = launch.kernel_side
    try:
        for round_no in range(rounds):
            for index, (name, text) in enumerate(variants.items()):
                launch.kernel_side = _LauncherText(text)  # type: ignore[assignment]
                with KernelSession(workdir / f"launcher-{round_no}-{index}") as session:
                    medians[name].append(
                        median(timed_cells(session, PEERS_CELL, count, "499500\n"))
                    )
    finally:
        launch.kernel_side = shipped_module
    return {
        "rounds": rounds,
        "cells_per_round": count,
        "cell": PEERS_CELL,
        "median_ms": {name: ms(median(v)) for name, v in medians.items()},
        "round_medians_ms": {name: [ms(x) for x in v] for name, v in medians.items()},
    }


# -- 2. task start ------------------------------------------------------------------------------
def task_starts(samples: int, workdir: Path) -> dict[str, Any]:
    settings = load_settings(None, **{"executor.workdir": str(workdir / "runs")})
    services = Services(settings)
    services.kernel_bootstrap()  # built once, before the timings
    cold, pooled = [], []
    try:
        for i in range(samples):
            began = time.perf_counter()
            session = services.kernel_session(workdir / "runs" / f"cold-{i}")
            session.start()  # ipykernel start + the session's bootstrap
            cold.append(time.perf_counter() - began)
            session.shutdown()
        slots = workdir / "runs" / ".kernel-pool"
        with KernelPool(services.kernel_session, 2, slots) as pool:
            for i in range(samples):
                assert pool.wait_ready(timeout=120), "the pool did not warm up"
                time.sleep(0.5)  # the steady state: no refill starting a kernel meanwhile
                began = time.perf_counter()
                session = pool.take(workdir / "runs" / f"pooled-{i}")
                session.start()  # a no-op for a warm kernel, as in KernelRegistry.get
                pooled.append(time.perf_counter() - began)
                session.shutdown()
            warm = pool.stats.taken_warm
    finally:
        services.close()
    return {
        "samples": samples,
        "cold_median_ms": ms(median(cold)),
        "pooled_median_ms": ms(median(pooled)),
        "pooled_takes_that_were_warm": warm,
        "speedup": round(median(cold) / median(pooled), 1),
    }


# -- 3. short cells -----------------------------------------------------------------------------
def short_cells(count: int, workdir: Path) -> dict[str, Any]:
    with KernelSession(workdir / "cells", bootstrap=probes.BOOTSTRAP) as session:
        for i in range(20):
            session.execute(f"x = {i}")
        began = time.perf_counter()
        for i in range(count):
            session.execute(f"x = {i}")
        took = time.perf_counter() - began
    return {"cells": count, "seconds": round(took, 3), "cells_per_second": round(count / took, 1)}


# -- 4. library functions -----------------------------------------------------------------------
def craft_tools() -> list[tuple[str, str]]:
    tools = []
    for path in sorted(CRAFT.glob("epoch_*/4_valid_tools.csv")):
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                match = re.search(r"^def (\w+)\(", row["tool"], re.M)
                if match:
                    tools.append((match.group(1), row["tool"]))
    return tools


def tool_sources(count: int, tools: list[tuple[str, str]]) -> list[str]:
    sources = []
    for i in range(count):
        name, code = tools[i % len(tools)]
        if i >= len(tools):  # a repeat: a distinct function under a distinct name
            code = re.sub(rf"\bdef {name}\(", f"def {name}_{i // len(tools) + 1}(", code, count=1)
        sources.append(CRAFT_HEADER + code)
    return sources


def define_functions(counts: list[int], workdir: Path) -> dict[str, Any]:
    tools = craft_tools()
    if not tools:
        return {"skipped": f"no CRAFT tools under {CRAFT}"}
    figures: dict[str, Any] = {"distinct_tools": len(tools)}
    for count in counts:
        sources = tool_sources(count, tools)
        with KernelSession(workdir / f"define-{count}", bootstrap=probes.BOOTSTRAP) as session:
            assert session.execute(CRAFT_HEADER, timeout=120, silent=True).ok()  # imports once
            failed = 0
            began = time.perf_counter()
            for source in sources:
                failed += not session.execute(source, timeout=30, silent=True).ok()
            took = time.perf_counter() - began
            one_cell = "\n".join(sources)
            began = time.perf_counter()
            assert session.execute(one_cell, timeout=120, silent=True).ok()
            together = time.perf_counter() - began
        figures[str(count)] = {
            "one_cell_each_ms": ms(took),
            "per_function_ms": ms(took / count),
            "all_in_one_cell_ms": ms(together),
            "failed": failed,
        }
    return figures


# -- 5. concurrent tasks ------------------------------------------------------------------------
PLAIN_CELL = "total = sum(range({n}))\nprint(f'ANSWER={{total}}')"
FUNCTION_CELL = '''
def sum_below_{n}(limit: int = {n}) -> int:
    """Sum of the integers below a limit (task {n})."""
    return sum(range(limit))

print(f"ANSWER={{sum_below_{n}()}}")
'''
_TASK = re.compile(r"Task:\n(.*?)\n\n", re.S)
_ANSWER = re.compile(r"ANSWER=(\d+)")


def stub_rules(stub: StubLLM, cell: str) -> None:
    """A model that solves 'Sum the integers below N.' in one step, in any interleaving."""

    def user_text(request: dict[str, Any]) -> str:
        return next(m["content"] for m in request["messages"] if m["role"] == "user")

    def planner(request: dict[str, Any]) -> str:
        text = user_text(request)
        found = _ANSWER.findall(text.split("Steps so far:", 1)[1])
        return planner_answer(found[-1]) if found else planner_step("Compute the sum.")

    def coder(request: dict[str, Any]) -> str:
        n = int(re.search(r"below (\d+)", _TASK.search(user_text(request)).group(1)).group(1))
        return coder_cell(cell.format(n=n))

    stub.add_rule("planner", planner)
    stub.add_rule("coder", coder)


def concurrent_tasks(levels: list[int], count: int, workdir: Path) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for kind, cell in (("no_function", PLAIN_CELL), ("one_function", FUNCTION_CELL)):
        rows = {}
        batch_of(cell, 1, 1, workdir)  # warm-up, not counted: imports, clients, embedder
        for level in levels:
            summary, warm = batch_of(cell, level, count, workdir)
            rows[str(level)] = {
                "tasks": count,
                "done": summary.done,
                "seconds": round(summary.seconds, 2),
                "tasks_per_second": round(summary.finished / summary.seconds, 2),
                "warm_kernel_takes": warm,
            }
        figures[kind] = rows
    return figures


def batch_of(cell: str, level: int, count: int, workdir: Path) -> tuple[Any, int]:
    """One run_batch of `count` tasks at concurrency `level`, in a fresh home and library.
    Returns the summary and how many kernels came warm from the pool."""
    home = Path(tempfile.mkdtemp(prefix=f"tasks-{level}-", dir=workdir))
    tasks = [BatchTask(str(i), f"Sum the integers below {1000 + i}.") for i in range(count)]
    with StubLLM() as stub:
        stub_rules(stub, cell)
        config = write_stub_config(
            home / "config.yaml",
            stub.base_url,
            home,
            librarian={"generalize": False, "ask_model": False},
        )
        settings = load_settings(config, **{"models.default.api_key_env": ""})
        services = Services(settings)
        services.library  # noqa: B018  # load the embedder before the clock starts
        try:
            summary = run_batch(
                tasks, settings, concurrency=level, out=home / "results.jsonl", services=services
            )
            pool = services.kernel_pool
            return summary, pool.stats.taken_warm if pool else 0
        finally:
            services.close()


SECTIONS = ("round_trip", "launcher", "task_start", "short_cells", "define", "concurrent")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--round-trips", type=int, default=200)
    parser.add_argument("--starts", type=int, default=7, help="cold and pooled starts each")
    parser.add_argument("--cells", type=int, default=1000, help="short cells timed")
    parser.add_argument("--functions", type=int, nargs="+", default=[50, 500])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--tasks", type=int, default=8, help="tasks per concurrency level")
    parser.add_argument("--launcher-rounds", type=int, default=5)
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument(
        "--out",
        type=Path,
        help="figures as JSON (default: a new bench/results/runs/executor-<time>.json; pass "
        "bench/results/executor.json to update the committed figures)",
    )
    args = parser.parse_args(argv)
    run = set(args.sections)

    print(f"machine: {machine_line()}\n", flush=True)
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-executor-") as tmp:
        work = Path(tmp)
        if "round_trip" in run:
            rt = figures["round_trip"] = round_trips(args.round_trips, work)
            print_table(
                f"Trivial cell round trip (median of {rt['count']})",
                ["path", "ms"],
                [
                    ["KernelSession.execute", rt["kernel_session_median_ms"]],
                    ["bare execute_interactive", rt["bare_execute_interactive_median_ms"]],
                    [
                        "bare, --Kernel._execute_sleep=0",
                        rt["bare_without_execute_sleep_median_ms"],
                    ],
                    ["ratio", rt["ratio"]],
                ],
            )
        if "launcher" in run:
            lab = figures["launcher"] = launcher_ab(args.launcher_rounds, args.round_trips, work)
            print_table(
                f"The withdrawn launcher patch, {lab['cell']!r} through KernelSession.execute "
                f"(median of {lab['rounds']} rounds x {lab['cells_per_round']} cells)",
                ["launcher", "ms", "each round's median, ms"],
                [
                    [name, v, " ".join(str(x) for x in lab["round_medians_ms"][name])]
                    for name, v in lab["median_ms"].items()
                ],
            )
        if "task_start" in run:
            st = figures["task_start"] = task_starts(args.starts, work)
            print_table(
                f"Task start, kernel ready for the first cell (median of {st['samples']})",
                ["kernel", "ms"],
                [["cold", st["cold_median_ms"]], ["pooled", st["pooled_median_ms"]]],
            )
        if "short_cells" in run:
            sc = figures["short_cells"] = short_cells(args.cells, work)
            print_table("Short cells", ["cells", "s", "cells/s"], [list(sc.values())])
        if "define" in run:
            df = figures["define_functions"] = define_functions(args.functions, work)
            print_table(
                f"Defining CRAFT tools in a warm kernel ({df.get('distinct_tools')} distinct)",
                ["functions", "one cell each, ms", "per function, ms", "all in one cell, ms"],
                [
                    [n, v["one_cell_each_ms"], v["per_function_ms"], v["all_in_one_cell_ms"]]
                    for n, v in df.items()
                    if isinstance(v, dict)
                ],
            )
        if "concurrent" in run:
            ct = figures["concurrent_tasks"] = concurrent_tasks(args.levels, args.tasks, work)
            for kind, rows in ct.items():
                print_table(
                    f"Concurrent one-step tasks with the stub model ({kind.replace('_', ' ')})",
                    ["N", "tasks", "s", "tasks/s", "warm takes"],
                    [
                        [n, r["tasks"], r["seconds"], r["tasks_per_second"], r["warm_kernel_takes"]]
                        for n, r in rows.items()
                    ],
                )
    path = save_figures_to(args.out, "executor", figures)
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
