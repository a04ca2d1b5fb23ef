"""The figures of bench/peers.py: per variant, medians over rounds, and the printed table.

A round is one driver process (``run_once``'s row: its tasks with the stub's counters); a
failed task leaves its round out of the timings (it measures a broken run, not the framework)
and is counted in the table's last column.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any, Protocol

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.common import format_table  # noqa: E402
from bench.peers_model import CHARS_PER_TOKEN  # noqa: E402


class Labelled(Protocol):
    """What the table needs of a variant."""

    key: str
    label: str


def slope(points: list[tuple[float, float]]) -> float:
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else float("nan")


def med(values: list[float]) -> float:
    values = [v for v in values if v is not None and v == v]
    return statistics.median(values) if values else float("nan")


def in_task_step_ms(task: dict[str, Any]) -> list[float]:
    """Milliseconds from the request that opens step k to the one that opens step k + 1 (or
    asks for the answer), k = 2..N: whole steps timed inside one task by the stub's clock, the
    same way for every framework. Step 1 is left out: it carries dynagraph's kernel start."""
    starts = task.get("stub_step_starts") or []
    return [(b - a) * 1000 for a, b in zip(starts[1:-1], starts[2:], strict=False)]


def summarize(rows: list[dict[str, Any]], ns: list[int]) -> dict[str, Any]:
    lo, hi = min(ns), max(ns)
    # a round with a failed task (wrong answer, error) is left out of the timings and counts:
    # it measures a broken run, not the framework; the table counts the failures
    ran = [r for r in rows if "tasks" in r]
    good = [r for r in ran if all(t["ok"] for t in r["tasks"])]
    per_round = []
    for r in good:
        measured = [t for t in r["tasks"] if not t["warmup"]]
        by_n = {t["n"]: t for t in reversed(measured)}  # the first task of each N
        calls = {n: t.get("stub_requests", 0) for n, t in by_n.items()}
        per_round.append(
            {
                "ms_per_step": slope([(t["n"], t["ms"]) for t in measured]),
                "calls_per_step": (calls[hi] - calls[lo]) / (hi - lo) if hi > lo else float("nan"),
                "calls_per_task_max_n": calls[hi],
                "prompt_tokens_max_n": by_n[hi].get("stub_prompt_chars", 0) / CHARS_PER_TOKEN,
                "prompt_tokens_per_step": (
                    by_n[hi].get("stub_prompt_chars", 0) - by_n[lo].get("stub_prompt_chars", 0)
                )
                / CHARS_PER_TOKEN
                / (hi - lo)
                if hi > lo
                else float("nan"),
                "first_task_ms": r["tasks"][0]["ms"],
                "cold_start_s": r["cold_start_s"],
                "imports_s": r["imports_s"],
                "driver_peak_rss_mb": (r["driver_peak_rss_kb"] or 0) / 1024,
                "tree_peak_rss_mb": r["tree_peak_rss_kb"] / 1024,
            }
        )
    # ms per step: the slope through each N's median task time. A per-round slope is kept too
    # (``ms_per_step_round_median``), but one slow task (dynagraph's kernel shutdown stalls
    # ~2.6 s in about one task in four) swings a 3-point slope far more than a median per N.
    times = {
        n: med([t["ms"] for r in good for t in r["tasks"] if not t["warmup"] and t["n"] == n])
        for n in ns
    }
    summary_in_task = med(
        [
            ms
            for r in good
            for t in r["tasks"]
            if not t["warmup"] and t["n"] == hi
            for ms in in_task_step_ms(t)
        ]
    )
    failed = sum(1 for r in ran for t in r["tasks"] if not t["ok"])
    unscripted = sum(t.get("stub_unscripted", 0) for r in ran for t in r["tasks"])
    summary = {
        k: round(med([p[k] for p in per_round]), 3) for k in (per_round[0] if per_round else {})
    }
    summary["ms_per_step_round_median"] = summary.pop("ms_per_step", float("nan"))
    summary["ms_per_step"] = round(slope(list(times.items())), 3) if good else float("nan")
    summary["ms_per_task_max_n"] = round(times[hi], 3) if good else float("nan")
    summary["ms_per_step_in_task"] = round(summary_in_task, 3)
    summary["median_ms_by_n"] = {str(n): round(v, 1) for n, v in times.items()}
    summary.update(
        rounds=len(good),
        rounds_with_failures=len(ran) - len(good),
        driver_failures=len(rows) - len(ran),
        failed_tasks=failed,
        tasks_run=sum(len(r["tasks"]) for r in ran),
        unscripted_requests=unscripted,
    )
    return summary


COLUMNS = [
    ("calls_per_step", "model calls / step"),
    ("ms_per_step", "ms / step (slope)"),
    ("ms_per_step_in_task", "ms / step in task"),
    ("ms_per_task_max_n", "ms / task, N=10"),
    ("first_task_ms", "first task (N=1), ms"),
    ("cold_start_s", "cold start, s"),
    ("driver_peak_rss_mb", "peak RSS, MB"),
    ("tree_peak_rss_mb", "peak RSS with kernels, MB"),
    ("prompt_tokens_max_n", "prompt tokens / task, N=10"),
    ("prompt_tokens_per_step", "prompt tokens / step"),
]


def table(variants: list[Labelled], summaries: dict[str, dict[str, Any]], max_n: int) -> str:
    headers = (
        ["framework"] + [h.replace("N=10", f"N={max_n}") for _, h in COLUMNS] + ["failed tasks"]
    )
    rows = []
    for v in variants:
        s = summaries.get(v.key)
        if not s or not s.get("rounds"):  # no round without a failure
            failed = f"{s['failed_tasks']} / {s['tasks_run']}" if s else "-"
            rows.append([v.label] + ["-"] * len(COLUMNS) + [failed])
            continue
        cells = []
        for key, _ in COLUMNS:
            value = s.get(key, float("nan"))
            if key == "cold_start_s":
                cells.append(f"{value:.2f}")
            elif key == "calls_per_step":
                cells.append(f"{value:g}")
            elif key in ("ms_per_step", "ms_per_step_in_task"):
                cells.append(f"{value:,.1f}")
            else:
                cells.append(f"{value:,.0f}")
        rows.append([v.label, *cells, f"{s['failed_tasks']} / {s['tasks_run']}"])
    return format_table(headers, rows)
