"""Figure 4 of bench/librarian.py: a replay model answers each generalization request with
CRAFT's ``tool`` for the row's ``code``; the share admitted after probe verification."""

from __future__ import annotations

import ast
import builtins
import time
from collections import Counter
from pathlib import Path
from typing import Any

from dynagraph.tools.librarian.candidate import Origin
from dynagraph.tools.librarian.context import AdmissionContext, Restart
from dynagraph.tools.librarian.generalize import GeneralizeStage, flag_specific
from dynagraph.tools.librarian.model import GeneralizeReply
from dynagraph.tools.librarian.scratch import ScratchVerifier
from dynagraph.tools.librarian.settings import LibrarianSettings
from dynagraph.tools.librarian.signature import parameters

from bench import librarian_core
from bench.craft import header_names
from bench.librarian_core import (
    Row,
    bootstrapped_kernel,
    candidate_of,
    fresh_library,
    function_of,
)

# -- figure 4: generalization -----------------------------------------------------------------------


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
    free = (
        {n.id for n in ast.walk(call) if isinstance(n, ast.Name) and n.id != tool_fn.name}
        - set(params)
        - header_names(librarian_core.HEADER)
        - set(dir(builtins))
    )
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
