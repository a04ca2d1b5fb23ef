"""Task-accuracy harnesses for users with a model endpoint: GAIA, MATH and TabMWP.

Loaders read local files only; scorers follow each benchmark's own rules; the runner writes
resumable JSON Lines results and the summary reports accuracy, steps, tokens per node and how
much the function library was reused. ``dynagraph eval`` (``evals.cli``) ties them together.
"""

from dynagraph.evals.benchmarks import BENCHMARKS, Benchmark
from dynagraph.evals.gaia import load_gaia, score_gaia
from dynagraph.evals.gaia_scorer import question_scorer
from dynagraph.evals.math_answers import last_boxed, math_equal, normalize_math
from dynagraph.evals.math_dataset import load_math, score_math
from dynagraph.evals.runner import read_results, run_eval, task_record
from dynagraph.evals.summary import format_summary, summarize
from dynagraph.evals.tabmwp import load_tabmwp, normalize_tabmwp, score_tabmwp, tabmwp_equal
from dynagraph.evals.tasks import EvalDataError, EvalTask

__all__ = [
    "BENCHMARKS",
    "Benchmark",
    "EvalDataError",
    "EvalTask",
    "format_summary",
    "last_boxed",
    "load_gaia",
    "load_math",
    "load_tabmwp",
    "math_equal",
    "normalize_math",
    "normalize_tabmwp",
    "question_scorer",
    "read_results",
    "run_eval",
    "score_gaia",
    "score_math",
    "score_tabmwp",
    "summarize",
    "tabmwp_equal",
    "task_record",
]
