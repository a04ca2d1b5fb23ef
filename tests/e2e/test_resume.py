"""A task stopped with Ctrl-C and resumed with the same ``--thread``, through ``dynagraph run``
in subprocesses against the loopback stub: it goes on where it stopped, and the resumed cells
are told that they run in a new kernel.

The stop lands while the coder's model call is out. The nodes run in the command's main thread
(graphs/run.py streams no ``custom`` events), so the stop interrupts that call at once instead
of waiting for the model's reply; the resumed run asks the coder again, in a new kernel. The
same holds whether checkpoints are written after every node (``checkpoint_durability: async``,
the default) or only when the run ends (``exit``): the stop ends the run.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from tests.support.cli import dynagraph_argv, wait_for_requests
from tests.support.config import coder_cell, planner_answer, planner_step, with_stub_config

pytestmark = pytest.mark.timeout(180)

CODER_DELAY_S = 30.0  # the stop must not wait for this reply
LOOSE_BOUND_S = 10.0


@pytest.mark.parametrize("durability", ["async", "exit"])
def test_a_run_stopped_during_the_coders_call_resumes_in_a_new_kernel(
    durability, cli_env, stub_env, tmp_path
):
    stub = stub_env["stub"]
    cli_env = with_stub_config(
        cli_env, stub_env, tmp_path / "config.yaml", checkpoint_durability=durability
    )

    def slow_cell(request):
        time.sleep(CODER_DELAY_S)
        return coder_cell("b = a * 3\nprint('B', b)")

    stub.script(
        "planner",
        [planner_step("Set a to 2."), planner_step("Set b to a * 3."), planner_answer("6")],
    )
    stub.script(
        "coder",
        [
            coder_cell("a = 2\nprint('A', a)"),
            slow_cell,  # asked for step 2 when the stop comes; its reply never arrives
            coder_cell("b = a * 3\nprint('B', b)"),  # step 2 again, resumed: `a` is gone
            coder_cell("a = 2\nb = a * 3\nprint('B', b)"),  # the retry, in the new kernel
        ],
    )
    argv = dynagraph_argv("run", "compute b", "--thread", "resumable", "--json")
    first = subprocess.Popen(
        argv, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_for_requests(stub, "coder", 2, first)
    time.sleep(1.0)  # the request is out, its reply 29 s away
    sent = time.monotonic()
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=90)
    took = time.monotonic() - sent
    assert first.returncode == 130, err[-2000:]
    assert took < LOOSE_BOUND_S, f"the stop waited {took:.1f} s for the model's reply"

    resumed = subprocess.run(argv, env=cli_env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    result = json.loads(resumed.stdout)
    assert result["status"] == "done" and result["answer"] == "6"
    assert [s["instruction"] for s in result["steps"]] == ["Set a to 2.", "Set b to a * 3."]
    second = result["steps"][1]
    assert second["status"] == "ok" and second["attempts"] == 2 and second["restarted"]
    # the coder's retry was told why `a` is gone
    retry_prompt = stub.requests_for("coder")[-1]["messages"][-1]["content"]
    assert "resumed in a new kernel" in retry_prompt and "NameError" in retry_prompt
    assert stub.remaining("coder") == 0 and stub.remaining("planner") == 0


def test_a_thread_runs_once_at_a_time_and_resumes_only_its_own_task(cli_env, stub_env, tmp_path):
    """A second run of a thread that is running is refused before it writes anything, and a
    stopped thread is resumed only by its own task's text (an attack saw two runs of one
    thread both go ahead, each reporting the other's answer, and a resume with another text
    answer the old task without a word)."""
    stub = stub_env["stub"]
    cli_env = with_stub_config(cli_env, stub_env, tmp_path / "config.yaml")

    def slow_cell(request):
        time.sleep(CODER_DELAY_S)
        return coder_cell("print('late')")

    stub.script("planner", [planner_step("Print something.")])
    stub.script("coder", [slow_cell])
    argv = dynagraph_argv("run", "print something", "--thread", "once", "--json")
    first = subprocess.Popen(
        argv, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_for_requests(stub, "coder", 1, first)
    second = subprocess.run(argv, env=cli_env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 2, second.stderr[-2000:]
    assert "thread once is being run by another run now" in second.stderr
    assert "Traceback" not in second.stderr and len(stub.requests_for("planner")) == 1
    assert json.loads(second.stdout)["status"] == "error"

    first.send_signal(signal.SIGINT)
    first.communicate(timeout=90)
    assert first.returncode == 130

    other = dynagraph_argv("run", "a different task", "--thread", "once")
    refused = subprocess.run(other, env=cli_env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "thread once holds another task ('print something')" in refused.stderr
    assert "Traceback" not in refused.stderr and len(stub.requests_for("planner")) == 1
