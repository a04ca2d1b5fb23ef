#!/usr/bin/env python
"""A kernel cell's round trip with and without tools/kernel/kernel_side/cell_costs.py.

Why: a step's kernel cell is most of what dynagraph adds to a step beyond its model calls, and
cell_costs.py drops per-cell work of ipykernel and IPython whose result nobody reads (empty
flushes that wait on the IOPub thread, debug log records, the async check's compile, a second
transform, the pure-Python murmur2 of the cell's file name). This bench shows what that is worth
on three kinds of cell:

- ``step``: the peers' step (``x = sum(range(1000)); print(x)``, bench/peers.py);
- ``tool``: a real CRAFT cell, one validated tool with its call (bench/overhead.py's cells),
  taken in turn from ``--data``;
- ``definitions``: a library definition cell (tools/kernel/definitions.py) of ``--define``
  CRAFT tools, without the helper's source, as the executor sends a step's hits.

Two kernels start with dynagraph's own startup; in the ``stock`` one a cell then undoes what
cell_costs.py changed (each change is an instance attribute or the logger's level). Each round
times ``--cells`` cells of each kind in each kernel, interleaved; medians per round, then the
median of the rounds' medians and its ratio.

Usage: ``python bench/cell_costs.py [--rounds 5] [--cells 100] [--data DIR] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dynagraph.tools.kernel import definitions  # noqa: E402
from dynagraph.tools.kernel.session import KernelSession  # noqa: E402

from bench.common import add_out_argument, machine_line, print_table, save_figures_to  # noqa: E402
from bench.overhead import load_tools  # noqa: E402

STEP_CELL = "x = sum(range(1000)); print(x)"

#: Undoes kernel_side/cell_costs.py in a started kernel: what the stock ipykernel does per cell.
UNDO_CELL_COSTS = """
import logging as __logging, sys as __sys
for __stream in (__sys.stdout, __sys.stderr):
    for __name in ("flush", "_flush", "_dynagraph_flush"):
        __stream.__dict__.pop(__name, None)
for __name in ("should_run_async", "transform_cell", "_dynagraph_costs"):
    get_ipython().__dict__.pop(__name, None)
get_ipython().compile.__dict__.pop("get_code_name", None)
get_ipython().kernel.log.setLevel(__logging.DEBUG)
del __logging, __sys, __stream, __name
"""

#: Prints how many of cell_costs.py's changes a kernel has (0: a stock kernel).
COUNT_CHANGES = (
    "import sys\n"
    "print(sum(n in vars(s) for s in (sys.stdout, sys.stderr) for n in ('flush', '_flush'))"
    " + sum(n in vars(get_ipython()) for n in ('should_run_async', 'transform_cell'))"
    " + ('get_code_name' in vars(get_ipython().compile)))"
)

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "craft-tabmwp"


def cell_kinds(data: Path, define: int) -> dict[str, Callable[[int], str]]:
    """Each kind of cell, as the i-th cell of a round."""
    tools = load_tools(data)
    groups = [tools[i : i + define] for i in range(0, len(tools) - define + 1, define)]
    # each definition cell defines its tools once per kernel: later ones redefine them, as a
    # step's hits are redefined after a %reset
    def_cells = [
        definitions.define_code([(t.name, t.code, []) for t in group], install=False)
        for group in groups
    ]
    return {
        "step": lambda i: STEP_CELL,
        "tool": lambda i: tools[i % len(tools)].cell(),
        "definitions": lambda i: def_cells[i % len(def_cells)],
    }


def timed(session: KernelSession, cells: list[str]) -> list[float]:
    times = []
    for code in cells:
        began = time.perf_counter()
        result = session.execute(code, timeout=60)
        times.append(1000 * (time.perf_counter() - began))
        if result.status in ("died", "timeout"):
            raise RuntimeError(f"a bench cell {result.status}: {result.to_observation(300)}")
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cells", type=int, default=100, help="cells of each kind per round")
    parser.add_argument("--define", type=int, default=3, help="tools per definition cell")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a CRAFT-format folder")
    add_out_argument(parser, "cell_costs")
    args = parser.parse_args(argv)
    kinds = cell_kinds(args.data, args.define)
    load_start = os.getloadavg()[0]
    print(machine_line(), f"load average {load_start:.2f}", sep="\n", flush=True)
    folders = [tempfile.mkdtemp(prefix="dynagraph-bench-") for _ in range(2)]
    kernels = {"lean": KernelSession(folders[0]), "stock": KernelSession(folders[1])}
    medians: dict[str, dict[str, list[float]]] = {k: {n: [] for n in kernels} for k in kinds}
    sizes = {kind: len(make(0)) for kind, make in kinds.items()}
    try:
        for session in kernels.values():
            session.start()
        undone = kernels["stock"].execute(UNDO_CELL_COSTS)
        changes = {name: k.execute(COUNT_CHANGES).stdout.strip() for name, k in kernels.items()}
        if not undone.ok() or changes["stock"] != "0" or changes["lean"] in ("0", ""):
            raise RuntimeError(f"the kernels are not stock and lean: {changes}")
        for session in kernels.values():  # warm up: imports, first definitions
            for make in kinds.values():
                timed(session, [make(i) for i in range(10)])
        for round_ in range(args.rounds):
            order = list(kernels) if round_ % 2 == 0 else list(reversed(kernels))
            for kind, make in kinds.items():
                cells = [make(i) for i in range(args.cells)]
                for name in order:
                    medians[kind][name].append(statistics.median(timed(kernels[name], cells)))
            print(f"round {round_ + 1}/{args.rounds} done", flush=True)
    finally:
        for session in kernels.values():
            session.shutdown()
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
    load_end = os.getloadavg()[0]
    rows, figures = [], {}
    for kind, by_kernel in medians.items():
        lean, stock = (statistics.median(by_kernel[n]) for n in ("lean", "stock"))
        rows.append([kind, sizes[kind], round(stock, 3), round(lean, 3), round(lean / stock, 3)])
        figures[kind] = {"bytes": sizes[kind], "stock_ms": stock, "lean_ms": lean,
                         "rounds": by_kernel}  # fmt: skip
    print_table(
        f"Kernel cell round trip, median of {args.rounds} rounds' medians ({args.cells} cells "
        f"each); load average {load_start:.2f} -> {load_end:.2f}",
        ["cell", "bytes (first)", "stock ms", "with cell_costs ms", "ratio"],
        rows,
    )
    figures["load_average"] = [load_start, load_end]
    print(f"saved {save_figures_to(args.out, 'cell_costs', figures)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
