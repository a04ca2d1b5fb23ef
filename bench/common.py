"""Helpers every bench script shares: where figures go, what machine made them, tables.

Benches print their figures and save them as JSON under ``bench/results/`` with the command,
machine and date, so ``bench/README.md`` can quote numbers that can be traced back to a run.
Benches are measurements, not tests: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
#: The shared data folder beside the checkout (``../shared/data``).
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def now_utc() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def machine_info() -> dict[str, Any]:
    """What a figure depends on: CPU, usable cores, memory, OS and Python."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 0
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpu": _cpu_model(),
        "cores": cores,
        "memory_gib": _memory_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load_average_1_5_15_min": load,  # other work on the machine skews timings
    }


def machine_line(info: dict[str, Any] | None = None) -> str:
    info = info or machine_info()
    return (
        f"{info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB, {info['os']}, "
        f"Python {info['python']}, load {info['load_average_1_5_15_min']}"
    )


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command that ran this bench, as a user would type it from the repo root."""
    argv = list(sys.argv if argv is None else argv)
    script = Path(argv[0]).resolve() if argv else Path("?")
    try:
        shown = script.relative_to(REPO_ROOT).as_posix()
    except ValueError:
        shown = str(script)
    return shlex.join(["python", shown, *argv[1:]])


def save_figures(name: str, figures: dict[str, Any], *, results_dir: Path | None = None) -> Path:
    """Write ``<results_dir>/<name>.json`` with the figures, command, machine and date."""
    folder = results_dir or RESULTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    payload = {
        "bench": name,
        "date": now_utc(),
        "command": command_line(),
        "machine": machine_info(),
        "figures": figures,
    }
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


#: Where a bench run writes when no ``--out`` is given: a new file per run, so committed figures
#: (bench/results/<name>.json, quoted by bench/README.md) change only when asked to.
RUNS_DIR = RESULTS_DIR / "runs"


def default_out(name: str) -> Path:
    """A new file for this run's figures: ``bench/results/runs/<name>-<UTC time>.json``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RUNS_DIR / f"{name}-{stamp}.json"
    serial = 1
    while path.exists():
        serial += 1
        path = RUNS_DIR / f"{name}-{stamp}-{serial}.json"
    return path


def add_out_argument(parser: argparse.ArgumentParser, name: str) -> None:
    """``--out FILE`` for a bench (default :func:`default_out`: never the committed figures)."""
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"figures as JSON (default: a new bench/results/runs/{name}-<time>.json; pass "
        f"bench/results/{name}.json to update the committed figures)",
    )


def save_figures_to(out: Path | None, name: str, figures: dict[str, Any]) -> Path:
    """:func:`save_figures` to the file ``out`` (or :func:`default_out` when None)."""
    path = out or default_out(name)
    return save_figures(path.stem, figures, results_dir=path.parent)


def baseline_shim(tree: Path, work: Path) -> Path:
    """A folder to put first on ``PYTHONPATH`` so that ``import dynagraph`` loads another
    revision's tree (``tree``: e.g. ``git archive HEAD | tar -x -C tree``): its ``dynagraph``
    package maps the subpackages to ``tree``'s folders, as the install's package-dir does. The
    process must also drop the checkout's editable finder from ``sys.meta_path``."""
    package = work / "baseline-shim" / "dynagraph"
    package.mkdir(parents=True)
    for item in (tree / "dynagraph").iterdir():
        (package / item.name).symlink_to(item)
    for sub in ("graphs", "nodes", "tools", "evals"):
        (package / sub).symlink_to(tree / sub, target_is_directory=True)
    return package.parent


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks."""
    data = sorted(values)
    if not data:
        return float("nan")
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


def median(values: Iterable[float]) -> float:
    data = list(values)
    return statistics.median(data) if data else float("nan")


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table (readable in a terminal, pasteable into bench/README.md)."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells
    ]
    lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value != value:
            return "-"
        return f"{value:.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)


def print_table(title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    text = f"{title}\n{format_table(headers, rows)}\n"
    print(text, flush=True)
    return text


def mark_epochs(ax: Any, records: Sequence[dict[str, Any]]) -> None:
    """A dotted line on ``ax`` between consecutive records of different CRAFT epochs."""
    for i in range(1, len(records)):
        if records[i]["epoch"] != records[i - 1]["epoch"]:
            ax.axvline(i + 0.5, color="grey", linewidth=0.6, linestyle=":")


def save_plot(fig: Any, path: Path) -> Path:
    """Lay out, write and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
