#!/usr/bin/env python
"""Soak: many one-step tasks through one process; open fds, threads and memory must stay flat.

Why: a long ``dynagraph batch`` or a server runs thousands of tasks in one process. Anything a
task leaves behind (a kernel client, jupyter_client's per-thread event loop and its socket
pair, a runtime folder, a thread) adds up there, and shows as growth between task 1 and
task 1,000.

How: ``run_task`` is called ``--tasks`` times (default 1,000) in this process with one
``Services`` (one library, one model factory, one kernel registry and a warm pool of one
kernel), every task with a new thread id and so a new kernel. The model is the loopback stub
of tests/support/openai_stub.py, run in a child process (its request log must not count
against this one's memory): the planner asks for one step, the coder answers
``print("soak-ok-<n>")``, the planner then answers. Embeddings come from the stub too (hash
vectors), so the library is used (searched and grown-from, it stays empty: the cell defines no
function) at no embedding cost. Checkpoints go to SQLite as in ``dynagraph run``.

After tasks 1, 10, 100, 1,000 (and the last one) it waits for the background kernel shutdowns
(``reaper.drain``) and reports open file descriptors, Python threads, OS threads, RSS, the
kernel processes still running under this one and the kernel runtime folders left in its
temporary folder.

Usage: ``python bench/soak.py [--tasks N] [--json PATH]``; figures in bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CELL = 'print("soak-ok-" + str(6 * 7))'
STUB_CHILD = """
import json, sys, threading
sys.path.insert(0, sys.argv[1])
from tests.support.config import coder_cell, planner_answer, planner_step
from tests.support.openai_stub import StubLLM

def text(request):
    return json.dumps(request.get("messages", []))

def planner(request):
    if "soak-ok-42" in text(request):  # the step's observation is in the prompt: answer
        return planner_answer("42")
    return planner_step("Print the answer.")

stub = StubLLM()
stub.add_rule("planner", planner)
stub.add_rule("coder", lambda request: coder_cell(sys.argv[2]))
stub.add_rule("*", lambda request: planner_answer("42"))
stub.start()
print(stub.base_url, flush=True)
sys.stdin.read()  # serve until the parent closes our stdin (or dies)
"""


def start_stub() -> tuple[subprocess.Popen[str], str]:
    child = subprocess.Popen(
        [sys.executable, "-c", STUB_CHILD, str(REPO), CELL],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    base_url = child.stdout.readline().strip()
    if not base_url.startswith("http"):
        child.kill()
        raise SystemExit(f"the stub model did not start: {base_url!r}")
    return child, base_url


def settings_for(base_url: str, home: Path) -> Any:
    from dynagraph.graphs.settings import Settings

    from tests.support.config import stub_config

    data = stub_config(
        base_url,
        home,
        embeddings={
            "provider": "openai",
            "model": "stub-embed",
            "base_url": base_url,
            "api_key_env": "OPENAI_API_KEY",
        },
        executor={"pool_size": 1},
    )
    return Settings.model_validate(data)


def _descendants() -> int:
    """Processes under this one (kernels, bwrap), from /proc."""
    me, children = os.getpid(), {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    todo, count = [me], 0
    while todo:
        for child in children.get(todo.pop(), []):
            count += 1
            todo.append(child)
    return count


def sample(task: int, seconds: float, tmp: Path) -> dict[str, Any]:
    from dynagraph.tools.kernel import reaper

    reaper.drain(60)  # the last task's kernel shutdown runs in the background
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return {
        "task": task,
        "open_fds": len(os.listdir("/proc/self/fd")),
        "python_threads": threading.active_count(),
        "os_threads": int(status["Threads"]),
        "rss_mib": round(int(status["VmRSS"].split()[0]) / 1024, 1),
        # minus the stub model's process; the pool's warm kernel is 3 under bwrap (bwrap, its
        # init in the PID namespace, the kernel), 1 without a sandbox
        "child_processes": _descendants() - 1,
        "kernel_runtime_dirs": len(list(tmp.glob("dynagraph-kernel-*"))),
        "seconds": round(seconds, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1000, help="tasks to run (default 1000)")
    parser.add_argument("--json", help="write the samples to this file")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="dynagraph-soak-"))
    tmp = root / "tmp"  # kernels' runtime folders land here (tempfile honours TMPDIR)
    tmp.mkdir()
    os.environ["TMPDIR"] = str(tmp)
    tempfile.tempdir = None
    home = root / "home"
    home.mkdir()
    os.environ["DYNAGRAPH_HOME"] = str(home)
    os.environ.setdefault("OPENAI_API_KEY", "sk-stub-not-a-secret")

    from dynagraph.graphs.run import run_task
    from dynagraph.graphs.services import Services
    from dynagraph.nodes.context import Context

    stub, base_url = start_stub()
    settings = settings_for(base_url, home)
    services = Services(settings)
    marks = {1, 10, 100, 1000, args.tasks}
    samples = []
    started = time.monotonic()
    try:
        for n in range(1, args.tasks + 1):
            result = run_task(
                "What is six times seven?", settings, context=Context(), services=services
            )
            if result.status != "done" or result.answer != "42":
                raise SystemExit(f"task {n} ended {result.status}: {result.error}")
            if n in marks:
                row = sample(n, time.monotonic() - started, tmp)
                samples.append(row)
                print(json.dumps(row), flush=True)
    finally:
        services.close()
        if stub.stdin is not None:
            stub.stdin.close()
        stub.wait(10)
    first, last = samples[0], samples[-1]
    print(
        f"\n{args.tasks} tasks in {last['seconds']:.0f} s; task 1 -> {last['task']}: "
        f"fds {first['open_fds']} -> {last['open_fds']}, "
        f"threads {first['python_threads']} -> {last['python_threads']} "
        f"(OS {first['os_threads']} -> {last['os_threads']}), "
        f"RSS {first['rss_mib']} -> {last['rss_mib']} MiB, "
        f"kernels left {last['child_processes']}, runtime folders left "
        f"{last['kernel_runtime_dirs']}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(samples, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
