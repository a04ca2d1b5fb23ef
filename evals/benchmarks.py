"""The benchmarks ``dynagraph eval`` knows: how to load each one and how to score an answer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dynagraph.evals.gaia import load_gaia, score_gaia
from dynagraph.evals.math_dataset import load_math, score_math
from dynagraph.evals.tabmwp import load_tabmwp, score_tabmwp
from dynagraph.evals.tasks import EvalTask


@dataclass(frozen=True)
class Benchmark:
    name: str
    load: Callable[[str | Path], list[EvalTask]]
    score: Callable[[str | None, EvalTask], bool]
    data_help: str


BENCHMARKS: dict[str, Benchmark] = {
    "gaia": Benchmark(
        "gaia",
        load_gaia,
        score_gaia,
        "downloaded gaia-benchmark/GAIA folder, a split folder, or its metadata.jsonl/.parquet",
    ),
    "math": Benchmark(
        "math",
        load_math,
        score_math,
        "MATH folder (<split>/<subject>/<n>.json) or a JSON Lines file (problem, answer)",
    ),
    "tabmwp": Benchmark(
        "tabmwp",
        load_tabmwp,
        score_tabmwp,
        "TabMWP problems_<split>.json (or its folder), or CRAFT's craft-tabmwp folder or CSV",
    ),
}
