"""Figure 2 of bench/librarian.py: behaviour-keeping and behaviour-changing rewrites of real
tools, and whether the cascade judges them duplicates (precision and recall)."""

from __future__ import annotations

import ast
import random
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from dynagraph.tools.librarian.candidate import Origin
from dynagraph.tools.librarian.cascade import admit
from dynagraph.tools.librarian.context import AdmissionContext
from dynagraph.tools.librarian.scratch import ScratchVerifier
from dynagraph.tools.librarian.settings import LibrarianSettings

from bench.librarian_core import (
    Row,
    bootstrapped_kernel,
    candidate_of,
    fresh_library,
    function_of,
    judged_same,
    record_probes,
)

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
