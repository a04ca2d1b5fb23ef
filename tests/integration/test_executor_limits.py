"""The executor's own memory stays bounded whatever a cell prints: a 50 MB print through the whole
graph (planner, coder, executor node, librarian) in a fresh process, whose peak memory is read
before and after. A single print reaches ipykernel as one write, so without the kernel-side cap
(tools/kernel/kernel_side/stream_cap.py) it arrives as one 50 MB message, ~150 MB of peak memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import user_env

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parents[2]
PRINT_SIZE = 50_000_000

CHILD = """
import json, resource, sys
from pathlib import Path
from dynagraph.graphs.run import run_task
from dynagraph.graphs.settings import load_settings
from tests.support.config import coder_cell, planner_answer, planner_step, write_stub_config
from tests.support.openai_stub import StubLLM

home = Path(sys.argv[1])
rows = []
with StubLLM() as stub:
    settings = load_settings(write_stub_config(home / "config.yaml", stub.base_url, home))
    for size in (1000, int(sys.argv[2])):  # a small print first: everything else is loaded
        stub.script("planner", [planner_step("Print it."), planner_answer("printed")])
        stub.script("coder", [coder_cell(f"print('x' * {size})")])
        result = run_task(f"print {size} characters", settings)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rows.append({"peak_mb": peak, "status": result.status, "steps": result.steps})
print(json.dumps(rows))
"""


def test_a_50_mb_print_leaves_the_executor_memory_bounded(tmp_path: Path) -> None:
    env = user_env(OPENAI_API_KEY="sk-stub", DYNAGRAPH_HOME=str(tmp_path), PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path), str(PRINT_SIZE)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=170,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    small, huge = json.loads(proc.stdout.strip().splitlines()[-1])
    assert small["status"] == huge["status"] == "done"
    step = huge["steps"][0]
    assert step["status"] == "ok"
    observation = step["observation"]
    assert len(observation) <= 4000 + 200  # executor.observation_chars, plus notes
    assert observation.count("x") > 1000  # head and tail of the output are kept
    cut = int(observation.split("[... ")[1].split(" characters cut")[0])
    assert PRINT_SIZE - 4000 < cut < PRINT_SIZE  # the cut is counted exactly, not guessed
    grew = huge["peak_mb"] - small["peak_mb"]
    assert grew < 20, f"the agent's peak memory grew by {grew:.0f} MB for a 50 MB print"
