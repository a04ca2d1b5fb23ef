#!/usr/bin/env python
"""Cold start of the ``dynagraph`` command: ``--help``, and ``run`` from process start to the
first model request (issue 14 target: under 1.0 s).

A loopback stub model (tests/support/openai_stub.py) in this process answers the planner at once
with a final answer; each round spawns ``dynagraph run "..." --quiet`` (a fresh
``DYNAGRAPH_HOME``, library on, empty) and takes the time from just before the spawn to the
stub receiving the planner's request, then the whole process's wall time; ``--help`` is timed
as a whole process. "floor" is a process that only imports LangGraph and langchain-openai and
sends one request with ChatOpenAI: what any agent on this stack pays. With ``--baseline TREE`` (``git archive HEAD | tar -x -C TREE``) the same
commands run against that tree in the same rounds, interleaved, the editable install's finder
removed (as bench/peers.py does). Children may write bytecode (``PYTHONDONTWRITEBYTECODE`` is
dropped from their environment) and one unmeasured warm-up round runs first, so every variant
starts from cached ``.pyc`` files, as an installed package does.

Usage: ``python bench/cold_start.py [--rounds 9] [--baseline /tmp/base]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import add_out_argument, baseline_shim, save_figures_to  # noqa: E402
from tests.support.config import planner_answer, write_stub_config  # noqa: E402
from tests.support.openai_stub import StubLLM  # noqa: E402

#: Runs ``dynagraph`` (its console script's ``main``: graphs/startup.py's, or the CLI's in a
#: tree that predates it) with argv; with a baseline tree on
#: PYTHONPATH the editable install's finder is removed first.
LAUNCH = (
    "import sys\n"
    "sys.meta_path[:] = [f for f in sys.meta_path "
    "if not (sys.argv[1] == 'base' and '__editable__' in repr(f))]\n"
    "sys.argv = ['dynagraph', *sys.argv[2:]]\n"
    "try: from dynagraph.graphs.startup import main\n"
    "except ImportError: from dynagraph.graphs.cli import main  # a tree before 13f\n"
    "sys.exit(main())"
)


#: The floor: a process that imports what any LangGraph + langchain-openai agent imports
#: (langgraph's graph, runtime and SQLite checkpointer; ChatOpenAI) and sends one request.
FLOOR = (
    "import sys; from langchain_openai import ChatOpenAI; "
    "import langgraph.graph, langgraph.runtime, langgraph.checkpoint.sqlite; "
    "from langchain_core.messages import HumanMessage, SystemMessage; "
    "ChatOpenAI(model='m', base_url=sys.argv[1], api_key='x', max_retries=0)"
    ".invoke([SystemMessage('planner'), HumanMessage('hi')])"
)


def one_run(stub: StubLLM, variant: str, env: dict[str, str], work: Path) -> tuple[float, float]:
    """(spawn to first model request, whole process), seconds."""
    if variant == "floor":
        return one_floor(stub, env, work)
    home = Path(tempfile.mkdtemp(prefix=f"{variant}-", dir=work))
    config = write_stub_config(home / "config.yaml", stub.base_url, home)
    first: list[float] = []
    seen = threading.Event()

    def answer(request: dict) -> str:
        if not seen.is_set():
            first.append(time.monotonic())
            seen.set()
        return planner_answer("42")

    stub.script("planner", [answer])
    run_env = {**env, "DYNAGRAPH_HOME": str(home)}
    command = [sys.executable, "-c", LAUNCH, variant, "run", "What is 6*7?"]
    command += ["--config", str(config), "--quiet"]
    spawned = time.monotonic()
    proc = subprocess.run(command, env=run_env, cwd=home, capture_output=True, text=True)
    ended = time.monotonic()
    if proc.returncode != 0 or "42" not in proc.stdout or not first:
        raise SystemExit(f"{variant}: run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return first[0] - spawned, ended - spawned


def one_floor(stub: StubLLM, env: dict[str, str], work: Path) -> tuple[float, float]:
    first: list[float] = []
    stub.script("planner", [lambda request: first.append(time.monotonic()) or "ok"])
    spawned = time.monotonic()
    command = [sys.executable, "-c", FLOOR, stub.base_url]
    proc = subprocess.run(command, env=env, cwd=work, capture_output=True, text=True)
    ended = time.monotonic()
    if proc.returncode != 0 or not first:
        raise SystemExit(f"floor failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return first[0] - spawned, ended - spawned


def one_help(variant: str, env: dict[str, str], work: Path) -> float:
    spawned = time.monotonic()
    command = [sys.executable, "-c", LAUNCH, variant, "--help"]
    proc = subprocess.run(command, env=env, cwd=work, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{variant}: --help failed: {proc.stderr[-2000:]}")
    return time.monotonic() - spawned


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--baseline", type=Path, help="another revision's tree, same rounds")
    add_out_argument(parser, "cold_start")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dynagraph-cold-"))
    dropped = ("OPENAI_BASE_URL", "PYTHONDONTWRITEBYTECODE")
    base_env = {k: v for k, v in os.environ.items() if k not in dropped}
    base_env |= {"OPENAI_API_KEY": "sk-stub", "OMP_WAIT_POLICY": "PASSIVE"}
    variants = {"new": base_env, "floor": base_env}
    if args.baseline:
        path = str(baseline_shim(args.baseline.resolve(), work))
        variants["base"] = {**base_env, "PYTHONPATH": path}
    figures: dict[str, dict[str, list[float]]] = {
        v: {"first": [], "run": [], "help": []} for v in variants
    }
    load_start = os.getloadavg()
    print(f"load average at start: {load_start}")
    try:
        with StubLLM() as stub:
            for variant, env in variants.items():  # warm-up: bytecode written, caches filled
                one_run(stub, variant, env, work)
                if variant != "floor":
                    one_help(variant, env, work)
            for round_no in range(args.rounds):
                order = list(variants) if round_no % 2 == 0 else list(reversed(variants))
                for variant in order:
                    first, whole = one_run(stub, variant, variants[variant], work)
                    figures[variant]["first"].append(first)
                    figures[variant]["run"].append(whole)
                    if variant != "floor":
                        figures[variant]["help"].append(one_help(variant, variants[variant], work))
                print(
                    f"round {round_no + 1}: "
                    + ", ".join(f"{v} first request {figures[v]['first'][-1]:.2f} s" for v in order)
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average at end: {os.getloadavg()}")
    print(f"{'':6s} {'to first request, s':>28s} {'run, whole process, s':>24s} {'--help, s':>20s}")
    for variant, f in figures.items():
        cells = [
            f"median {statistics.median(xs):.2f} (min {min(xs):.2f})" if xs else "-"
            for xs in (f["first"], f["run"], f["help"])
        ]
        print(f"{variant:6s} {cells[0]:>28s} {cells[1]:>24s} {cells[2]:>20s}")
    path = save_figures_to(
        args.out,
        "cold_start",
        {"load_start": load_start, "load_end": os.getloadavg(), "seconds": figures},
    )
    print(f"figures: {path}")


if __name__ == "__main__":
    main()
