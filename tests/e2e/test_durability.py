"""``checkpoint_durability``: what a task whose ``dynagraph run`` process was SIGKILLed leaves.

The process is killed while the coder's call for step 2 is out, then the same ``--thread`` runs
again. With ``async`` (the default) a checkpoint was written after every node, so the task
resumes at step 2 (in a new kernel); with ``exit`` nothing was written before the run's end,
so the task starts over. (A stop by Ctrl-C resumes under both: tests/e2e/test_resume.py.)
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.cli import dynagraph_argv, wait_for_requests
from tests.support.config import coder_cell, planner_answer, planner_step, with_stub_config

pytestmark = pytest.mark.timeout(180)

STEP_A, STEP_B = "Set a to 2.", "Set b to a * 3."
CELL_A, CELL_B = "a = 2\nprint('A', a)", "b = a * 3\nprint('B', b)"


def _slow(reply: str):
    def answer(request):
        time.sleep(30.0)  # the process is killed before this reply
        return reply

    return answer


def _kill_during_second_coder_call(argv: list[str], env: dict[str, str], stub) -> None:
    first = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_requests(stub, "coder", 2, first)
    time.sleep(1.0)  # an async checkpoint of the nodes before has long been written
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    assert first.returncode == -signal.SIGKILL


@pytest.mark.parametrize("durability", ["async", "exit"])
def test_a_killed_run_resumes_only_with_checkpoints_after_every_node(
    durability: str, cli_env: dict[str, str], stub_env, tmp_path: Path
):
    stub = stub_env["stub"]
    env = with_stub_config(
        cli_env, stub_env, tmp_path / "config.yaml", checkpoint_durability=durability
    )
    if durability == "async":  # resumed at step 2: the coder again, in a new kernel
        planner = [planner_step(STEP_A), planner_step(STEP_B), planner_answer("6")]
        coder = [coder_cell(CELL_A), _slow(coder_cell(CELL_B))]
        coder += [coder_cell(CELL_B), coder_cell(f"{CELL_A}\n{CELL_B}")]  # NameError, retry
    else:  # started over: both planner turns and step 1 again
        planner = [planner_step(STEP_A), planner_step(STEP_B)] * 2 + [planner_answer("6")]
        coder = [coder_cell(CELL_A), _slow(coder_cell(CELL_B))]
        coder += [coder_cell(CELL_A), coder_cell(CELL_B)]
    stub.script("planner", planner)
    stub.script("coder", coder)
    argv = dynagraph_argv("run", "compute b", "--thread", "killed", "--json")

    _kill_during_second_coder_call(argv, env, stub)
    again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)

    assert again.returncode == 0, again.stderr[-2000:]
    result = json.loads(again.stdout)
    assert result["status"] == "done" and result["answer"] == "6"
    assert [s["instruction"] for s in result["steps"]] == [STEP_A, STEP_B]
    assert stub.remaining("planner") == 0 and stub.remaining("coder") == 0
    second = result["steps"][1]
    if durability == "async":
        assert second["restarted"] and second["attempts"] == 2
        assert len(stub.requests_for("planner")) == 3
    else:
        assert not second["restarted"] and second["attempts"] == 1
        assert len(stub.requests_for("planner")) == 5
