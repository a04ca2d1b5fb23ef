"""A library function defined in a task's kernel is defined again after the kernel restarted:
the executor's record of what the kernel holds is dropped with the kernel (the planner starts
the kernel ahead, so the executor meets a kernel it did not start). Real ChatOpenAI against the
loopback stub, a real kernel and a real SQLite library; only the models' replies are scripted."""

from __future__ import annotations

import time

import pytest
from dynagraph.graphs.run import run_task

from tests.support.config import coder_cell, planner_answer, planner_step

pytestmark = pytest.mark.timeout(180)

DOUBLE = 'def double(x):\n    """Twice x."""\n    return 2 * x\n'

MULTIPLY_CELL = '''
def multiply_numbers(a: float, b: float) -> float:
    """Multiply two numbers."""
    return a * b

print(multiply_numbers(17, 23))
'''


def test_library_functions_are_defined_again_after_a_kernel_restart(stub_env, settings_for):
    stub = stub_env["stub"]
    settings = settings_for(agent={"max_steps": 6, "max_code_retries": 0})
    stub.script("planner", [planner_step("Multiply."), planner_answer("391")])
    stub.script("coder", [coder_cell(MULTIPLY_CELL)])
    assert run_task("What is 17 times 23?", settings).functions_created == ["multiply_numbers"]

    stub.script(
        "planner",
        [
            planner_step("Multiply 2 by 3."),
            planner_step("Stop the kernel."),
            planner_step("Multiply 4 by 5."),
            planner_answer("20"),
        ],
    )
    stub.script(
        "coder",
        [
            coder_cell("print(multiply_numbers(2, 3))"),
            coder_cell("import os\nos._exit(1)"),
            coder_cell("print(multiply_numbers(4, 5))"),
        ],
    )
    result = run_task("Multiply 2 by 3, then 4 by 5.", settings)
    assert result.status == "done", result.error
    first, died, after = result.steps
    assert first["reused"] == ["multiply_numbers"] and "6" in first["observation"]
    assert died["status"] == "died" and died["restarted"]
    assert after["retrieved"] == ["multiply_numbers"]
    assert after["status"] == "ok", after["observation"]
    assert "20" in after["observation"] and after["reused"] == ["multiply_numbers"]


def test_the_hits_are_defined_while_the_coders_model_call_is_out(
    stub_env, settings_for, monkeypatch
):
    """The coder hands its hits to the executor right after its search; they are defined in
    a background thread (not by the executor node afterwards), once per step."""
    import threading

    from dynagraph.nodes.executor import ExecutorNode

    stub = stub_env["stub"]
    settings = settings_for()
    stub.script("planner", [planner_step("Multiply."), planner_answer("391")])
    stub.script("coder", [coder_cell(MULTIPLY_CELL)])
    run_task("What is 17 times 23?", settings)

    callers: list[str] = []
    original = ExecutorNode.define_library_functions

    def recording(self, session, record_ids):
        callers.append(threading.current_thread().name)
        return original(self, session, record_ids)

    monkeypatch.setattr(ExecutorNode, "define_library_functions", recording)
    stub.script("planner", [planner_step("Multiply 2 by 3."), planner_answer("6")])
    stub.script("coder", [coder_cell("print(multiply_numbers(2, 3))")])
    result = run_task("Multiply 2 by 3.", settings)
    assert result.status == "done" and result.steps[0]["reused"] == ["multiply_numbers"]
    assert callers == ["dynagraph-define-ahead"]


def test_a_kernel_that_died_between_steps_is_reported_when_its_hits_restart_it(
    stub_env, settings_for
):
    """The kernel dies while idle; the next step's hits are defined ahead (their cell meets the
    dead kernel and restarts it): the step still says its kernel restarted, and the new
    kernel's definitions are the ones used."""
    stub = stub_env["stub"]
    settings = settings_for(agent={"max_steps": 6, "max_code_retries": 0})
    stub.script("planner", [planner_step("Multiply."), planner_answer("391")])
    stub.script("coder", [coder_cell(MULTIPLY_CELL)])
    run_task("What is 17 times 23?", settings)

    def after_the_kernel_died(request):
        time.sleep(2.0)  # the kernel's timer fires meanwhile
        return planner_step("Multiply a by 2.")

    stub.script("planner", [planner_step("Set a."), after_the_kernel_died, planner_answer("10")])
    stub.script(
        "coder",
        [
            coder_cell("import os, threading\na = 5\nthreading.Timer(0.5, os._exit, (1,)).start()"),
            coder_cell("print(multiply_numbers(a, 2))"),
        ],
    )
    result = run_task("Set a to 5, then multiply it by 2.", settings)
    assert result.status == "done", result.error
    first, second = result.steps
    assert first["status"] == "ok" and not first["restarted"]
    assert second["retrieved"] == ["multiply_numbers"]
    assert second["restarted"] and second["status"] == "error"
    assert "NameError" in second["observation"] and "name 'a'" in second["observation"]
    assert "restarted" in second["observation"]  # the cell is told why `a` is gone


def test_definitions_ahead_that_no_step_takes_go_with_their_kernel(settings_for) -> None:
    """The coder's model call failed after its search: no executor step takes the definitions
    made ahead. They are kept by kernel, weakly, so they go when the task's kernel is released
    and reaped (a long-lived process would otherwise keep one per failed call, each holding
    its kernel). A real kernel, registry and library."""
    import gc

    from dynagraph.graphs.services import Services
    from dynagraph.nodes.executor import ExecutorNode
    from dynagraph.tools.codeparse import normalized_hash
    from dynagraph.tools.kernel import reaper
    from dynagraph.tools.library import FunctionRecord

    services = Services(settings_for())
    try:
        record = services.library.add(
            FunctionRecord(name="double", code=DOUBLE, ast_hash=normalized_hash(DOUBLE))
        )
        services.kernels.get("task-1")  # the task's kernel, as the planner starts it
        executor = ExecutorNode(services)
        executor.define_ahead("task-1", [record.id])
        (pending,) = executor._ahead.values()
        defined, notes = pending.result(timeout=60).outcome  # made, and never taken
        assert defined == {"double": record.id} and notes == []
        del pending
        services.kernels.release("task-1")  # the task ended
        assert reaper.drain()
        gc.collect()
        assert len(executor._ahead) == 0
    finally:
        services.close()
