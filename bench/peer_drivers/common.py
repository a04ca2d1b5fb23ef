"""What every peer driver shares (standard library only: the drivers run in the peers' venvs).

A driver is started by ``bench/peers.py`` as
``python <driver>.py --base-url URL --tasks 1,10,1,5 --warmup 1 --result FILE [...]``: it builds
its framework's agent against the loopback model at ``URL``, then for each entry N of
``--tasks`` announces the task to the model stub (``POST <run>/bench/task``, outside the timed
window: the stub then scripts N code steps and the final answer in the framework's format),
runs the task and times it (``time.perf_counter`` around the framework's own run call). The
first ``--warmup`` tasks are reported but flagged as warm-up. It writes one JSON object to
``--result``: per task its N, milliseconds, answer and whether it was right, plus the process's
peak RSS (``VmHWM``).
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: The task every framework gets; the stub's scripted replies do exactly this.
CODE = "x = sum(range(1000))\nprint(x)"
EXPECTED = "499500"


def task_text(n: int) -> str:
    return (
        f"Run this Python cell {n} time(s), one step per run, printing the result each time:\n"
        f"    {CODE.replace(chr(10), '; ')}\n"
        f"Then give the value of x as the final answer."
    )


def parse_args(
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True, help="the stub's OpenAI base URL for this run")
    parser.add_argument("--tasks", required=True, help="comma-separated N per task, in order")
    parser.add_argument("--warmup", type=int, default=1, help="how many leading tasks are warm-up")
    parser.add_argument("--result", required=True, help="JSON file to write")
    if extra:
        extra(parser)
    return parser.parse_args()


def announce(base_url: str, index: int, n: int) -> None:
    """Tell the stub a task of N steps starts (its replies and counters are per task)."""
    url = base_url.rstrip("/").removesuffix("/v1") + "/bench/task"
    body = json.dumps({"index": index, "n": n}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def peak_rss_kb() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def run_all(
    args: argparse.Namespace,
    framework: str,
    version: str,
    run_one: Callable[[str, int, int], tuple[Any, int | None]],
    started_imports: float,
    extra: dict[str, Any] | None = None,
) -> None:
    """Run every task with ``run_one(task_text, n, index) -> (answer, steps or None)``."""
    imported = time.time()
    ns = [int(x) for x in args.tasks.split(",") if x]
    tasks = []
    for index, n in enumerate(ns):
        announce(args.base_url, index, n)
        error = None
        t0 = time.perf_counter()
        try:
            answer, steps = run_one(task_text(n), n, index)
        except Exception as exc:  # a failed task is reported, not fatal: the table shows it
            answer, steps, error = None, None, f"{type(exc).__name__}: {exc}"[:500]
        ms = 1000 * (time.perf_counter() - t0)
        ok = error is None and EXPECTED in str(answer) and (steps is None or steps == n)
        tasks.append(
            {
                "index": index,
                "n": n,
                "warmup": index < args.warmup,
                "ms": round(ms, 3),
                "answer": None if answer is None else str(answer)[:200],
                "steps": steps,
                "ok": ok,
                "error": error,
            }
        )
    payload = {
        "framework": framework,
        "version": version,
        "import_started": started_imports,
        "imported": imported,
        "peak_rss_kb": peak_rss_kb(),
        "tasks": tasks,
        **(extra or {}),
    }
    Path(args.result).write_text(json.dumps(payload, indent=1), encoding="utf-8")
