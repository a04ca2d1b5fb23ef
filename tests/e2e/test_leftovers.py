"""What runs leave behind in the temp folder (an attack found ~320 kernel folders in /tmp): a
killed run's folders are removed by the next run, a long TMPDIR works, and a graph that is never
closed leaves nothing at exit. Real `dynagraph run` subprocesses against the loopback stub."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.support.cli import dynagraph_argv
from tests.support.config import coder_cell, planner_answer, planner_step
from tests.support.processes import running
from tests.support.slow_task import start_slow_task
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(240)

QUICK_CELL = "print(6 * 7)\n"


def quick_run(cli_env, stub_env, cwd: Path, tmp: Path, thread: str) -> subprocess.CompletedProcess:
    """A one-step `dynagraph run` with ``TMPDIR=tmp``."""
    stub = stub_env["stub"]
    stub.script("planner", [planner_step("Multiply."), planner_answer("42")])
    stub.script("coder", [coder_cell(QUICK_CELL)])
    argv = dynagraph_argv("run", "What is 6 * 7?", "--thread", thread, "--quiet")
    return subprocess.run(argv, env={**cli_env, "TMPDIR": str(tmp)}, cwd=cwd,
                          capture_output=True, text=True, timeout=180)  # fmt: skip


def ours(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.glob("dynagraph-*"))


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="no /proc: owners not known")
def test_a_killed_runs_folders_are_removed_by_the_next_run(cli_env, stub_env, tmp_path, short_tmp):
    proc, kernels = start_slow_task(cli_env, stub_env, tmp_path, short_tmp)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert wait_for(lambda: not running(kernels), timeout=10), "kernels outlived a kill -9"
    left = ours(short_tmp)
    assert any(n.startswith("dynagraph-kernel-") for n in left), left  # nothing could remove it
    assert any(n.startswith("dynagraph-proxy-") for n in left), left
    legacy = short_tmp / "dynagraph-kernel-abcdefgh"  # made before folders named their owner
    legacy.mkdir()

    stub_env["stub"].clear()  # the killed run's answer was never asked for
    done = quick_run(cli_env, stub_env, tmp_path, short_tmp, "next")
    assert done.returncode == 0 and done.stdout.strip() == "42", done.stderr[-2000:]
    assert ours(short_tmp) == [legacy.name]  # the killed run's gone, an unknown owner's kept


def test_a_long_tmpdir_still_runs_a_task(cli_env, stub_env, tmp_path):
    """TMPDIR over ~71 characters: the proxy's socket path was too long for AF_UNIX and every
    task failed with a traceback; its folder now goes to /tmp, as the kernels' do."""
    long = Path(tempfile.mkdtemp(prefix="dg-", dir="/tmp")) / ("t" * 90)
    long.mkdir()
    try:
        done = quick_run(cli_env, stub_env, tmp_path, long, "long")
        assert done.returncode == 0 and done.stdout.strip() == "42", done.stderr[-2000:]
        assert "Traceback" not in done.stderr
        assert ours(long) == []
    finally:
        shutil.rmtree(long.parent, ignore_errors=True)


NO_CLOSE = """
import sys
from dynagraph import Context, build_graph, load_settings

graph = build_graph(load_settings(sys.argv[1]))
out = graph.invoke({"task": "What is 6 * 7?"}, {"configurable": {"thread_id": "t1"}},
                   context=Context(max_steps=3))
print(out.get("status"))
"""


def test_a_graph_never_closed_leaves_nothing_at_exit(cli_env, stub_env, tmp_path, short_tmp):
    """A script (or the module-level graph langgraph.json serves) that builds the graph and
    never calls services.close(): the proxy's folder and the kept scratch kernel's folder were
    left behind; they are removed at exit."""
    stub = stub_env["stub"]
    stub.script("planner", [planner_step("Multiply."), planner_answer("42")])
    cell = "def times(a, b):\n    '''a times b.'''\n    return a * b\n\nprint(times(6, 7))\n"
    stub.script("coder", [coder_cell(cell)])  # a function: the librarian's scratch kernel runs
    script = tmp_path / "no_close.py"
    script.write_text(NO_CLOSE, encoding="utf-8")
    env = {**cli_env, "TMPDIR": str(short_tmp)}
    done = subprocess.run([sys.executable, str(script), env["DYNAGRAPH_CONFIG"]], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=180)  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == "done", done.stderr[-2000:]
    assert ours(short_tmp) == []
