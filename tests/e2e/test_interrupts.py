"""Ctrl-C and SIGTERM during a running cell, through ``dynagraph run`` in a subprocess.

The signal must interrupt the cell at once, shut the kernels down (their runtime folders
removed, their processes gone) and end the process with 128 + the signal's number within a
couple of seconds, not when the cell's timeout runs out. A second Ctrl-C ends it at once, even
while the first one's cleanup still waits for a kernel that ignores the interrupt.
Timings are printed and bounded loosely (< 10 s against a 60 s cell and a 120 s timeout).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support.cli import dynagraph_argv
from tests.support.config import coder_cell, planner_answer, planner_step, write_stub_config
from tests.support.processes import running
from tests.support.slow_task import SLOW_CELL, start_slow_task

pytestmark = pytest.mark.timeout(180)

#: A cell the kernel's interrupt does not stop: the first Ctrl-C's cleanup then waits for the
#: kernel's shutdown, and a second Ctrl-C must not wait with it.
DEAF_CELL = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n" + SLOW_CELL
LOOSE_BOUND_S = 10.0


def _finish(proc: subprocess.Popen, sent: float) -> tuple[int, float, str]:
    try:
        _, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"still running 90 s after the signal: {err[-2000:]}")
    return proc.returncode, time.monotonic() - sent, err


def _assert_gone(kernels: set[int]) -> None:
    deadline = time.monotonic() + 5  # a killed kernel may take a moment to be reaped by init
    while running(kernels) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(kernels), "kernel processes outlived the CLI"


def _assert_clean(kernels: set[int], tmp: Path) -> None:
    _assert_gone(kernels)
    left = sorted(p.name for p in tmp.glob("dynagraph-*"))
    assert not left, f"runtime folders not removed (kernels not shut down): {left}"


@pytest.mark.parametrize(
    ("signum", "code"),
    [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)],
    ids=["SIGINT", "SIGTERM", "SIGHUP"],
)
def test_signal_during_a_cell_stops_it_and_exits_quickly(
    cli_env,
    stub_env,
    tmp_path,
    short_tmp,
    signum,
    code,
):
    proc, kernels = start_slow_task(cli_env, stub_env, tmp_path, short_tmp)
    sent = time.monotonic()
    proc.send_signal(signum)
    returncode, took, err = _finish(proc, sent)
    print(f"{signal.Signals(signum).name}: exit {returncode} after {took:.2f} s")
    assert returncode == code, err[-2000:]
    assert took < LOOSE_BOUND_S, f"took {took:.1f} s: {err[-2000:]}"
    assert "interrupted" in err
    assert "Traceback" not in err, err[-2000:]
    _assert_clean(kernels, short_tmp)


def test_second_ctrl_c_exits_at_once(cli_env, stub_env, tmp_path, short_tmp):
    proc, kernels = start_slow_task(cli_env, stub_env, tmp_path, short_tmp, DEAF_CELL)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)  # two signals sent together arrive as one: let the first be handled
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    returncode, took, err = _finish(proc, sent)
    print(f"second SIGINT: exit {returncode} {took:.2f} s after it")
    assert returncode == 130, err[-2000:]
    assert "interrupted again: exiting now" in err, err[-2000:]
    assert took < LOOSE_BOUND_S, f"took {took:.1f} s: {err[-2000:]}"
    _assert_gone(kernels)  # they die with the CLI (PR_SET_PDEATHSIG / bwrap)


SCRIPT = """
import sys
from dynagraph import load_settings, run_task
try:
    run_task("sleep", load_settings(sys.argv[1]), thread_id="slow", on_event=print)
except KeyboardInterrupt:
    print("KeyboardInterrupt reached the script", file=sys.stderr)
    raise
"""


def test_ctrl_c_in_a_script_stops_the_cell_at_once(cli_env, stub_env, tmp_path, short_tmp):
    """A script calling ``run_task`` (with a listener) in its main thread: Ctrl-C raises
    KeyboardInterrupt in the node's own thread, so the cell stops, the kernel shuts down and the
    script gets the interrupt within a second or so. While LangGraph ran every node in a worker
    thread (run_task streamed ``custom`` events), the interrupt waited in LangGraph's main
    thread for the 60 s cell to end."""
    script = tmp_path / "script.py"
    script.write_text(SCRIPT, encoding="utf-8")
    proc, kernels = start_slow_task(
        cli_env,
        stub_env,
        tmp_path,
        short_tmp,
        argv=lambda config: [sys.executable, str(script), str(config)],
    )
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    returncode, took, err = _finish(proc, sent)
    print(f"script SIGINT: exit {returncode} after {took:.2f} s")
    assert "KeyboardInterrupt reached the script" in err, err[-2000:]
    assert took < LOOSE_BOUND_S, f"took {took:.1f} s: {err[-2000:]}"
    _assert_clean(kernels, short_tmp)


# -- in-process: cancel_running() reaches a cell received in another thread -----------------------


def _in_worker(session, code: str) -> tuple[threading.Thread, dict[str, object]]:
    """``session.execute(code)`` in a started thread; its result or what it raised lands in
    the dict."""
    outcome: dict[str, object] = {}

    def worker() -> None:
        try:
            outcome["result"] = session.execute(code, timeout=120)
        except BaseException as exc:
            outcome["raised"] = exc

    thread = threading.Thread(target=worker)
    thread.start()
    return thread, outcome


def test_cancel_running_stops_a_cell_in_a_worker_thread(tmp_path):
    from dynagraph.tools.kernel import KernelSession
    from dynagraph.tools.kernel.cell import CellCancelled, cancel_running, resume_cells

    with KernelSession(tmp_path / "work", sandbox="none") as session:
        session.execute("kept = 41", timeout=30)
        thread, outcome = _in_worker(session, "import time; time.sleep(60)")
        time.sleep(1.0)  # the cell is running
        sent = time.monotonic()
        assert cancel_running() == 1
        thread.join(30)
        took = time.monotonic() - sent
        print(f"cancel_running: the worker raised after {took:.2f} s")
        assert isinstance(outcome.get("raised"), CellCancelled), outcome
        assert took < LOOSE_BOUND_S
        after = session.execute("print(kept + 1)", timeout=30)  # interrupted, not restarted
        assert after.stdout == "42\n" and session.restarts == 0, after.to_observation()

        cancel_running(for_good=True)
        try:
            with pytest.raises(CellCancelled):
                session.execute("print('never waited for')", timeout=30)
        finally:
            resume_cells()
        again = session.execute("print('again')", timeout=30)
        # the refused cell was never sent (no interrupt raced the kernel: it ended, exit 0,
        # in ~1 run in 4 when the cell was sent and interrupted at once)
        assert (again.stdout, session.restarts) == ("again\n", 0), again.to_observation()
        assert "never waited for" not in " ".join(again.notes)


def test_a_cancel_as_the_cell_is_sent_interrupts_the_cell_not_the_kernel(tmp_path, monkeypatch):
    """cancel_running() the moment a worker's cell is sent: the interrupt waits until the
    kernel runs the cell (its execute_input). Sent at once, the SIGINT could land while
    ipykernel was still taking the request, and the kernel ended (exit 0) in 4-5 of 100."""
    from dynagraph.tools.kernel import KernelSession
    from dynagraph.tools.kernel import cell as cells
    from dynagraph.tools.kernel.launch import KernelProcess

    with KernelSession(tmp_path / "work", sandbox="none") as session:
        session.execute("kept = 41", timeout=30)
        interrupts: list[int] = []
        interrupt = KernelProcess.interrupt

        def counted(process: KernelProcess) -> None:
            interrupts.append(1)
            interrupt(process)

        monkeypatch.setattr(KernelProcess, "interrupt", counted)
        lost: list[str] = []
        for attempt in range(100):
            thread, outcome = _in_worker(session, "import time; time.sleep(5)")
            while not cells._STOPPING.active and thread.is_alive():  # its receive loop is on
                time.sleep(0)
            cells.cancel_running()
            thread.join(30)
            assert isinstance(outcome.get("raised"), cells.CellCancelled), outcome
            # one SIGINT a cancel: a second one (CellCancelled is a KeyboardInterrupt, which
            # execute() passed on to the kernel again) landed in the next cell or ended it
            assert len(interrupts) <= 1, f"attempt {attempt}: {len(interrupts)} interrupts"
            interrupts.clear()
            after = session.execute("print(kept + 1)", timeout=30)
            if session.restarts or after.stdout != "42\n" or after.status != "ok":
                lost.append(f"attempt {attempt}: {after.status} {after.to_observation()[:300]}")
                break
        assert not lost, lost


def test_ctrl_c_during_a_batch_ends_with_its_summary_and_no_thread_traceback(
    cli_env, stub_env, tmp_path
):
    """Ctrl-C while a batch's task runs and its kernel pool refills: exit 130, the summary line
    (what finished, "(interrupted)") before the command's own last line, and no traceback from
    the pool's thread (an attack saw "Exception in thread dynagraph-kernel-pool ...
    CellCancelled" and no summary)."""
    stub = stub_env["stub"]
    stub.script("planner", [planner_step("Sleep a minute."), planner_answer("done")] * 2)
    stub.script("coder", [coder_cell(SLOW_CELL)] * 2)
    home = Path(cli_env["DYNAGRAPH_HOME"])
    config = write_stub_config(
        tmp_path / "slow.yaml", stub_env["base_url"], home, executor={"timeout": 120.0}
    )
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text('{"id": "a", "task": "sleep"}\n{"id": "b", "task": "sleep"}\n')
    argv = dynagraph_argv("batch", str(tasks), "--out", str(tmp_path / "r.jsonl"),
                          "--concurrency", "1", "--pool-size", "2", "-q")  # fmt: skip
    proc = subprocess.Popen(
        argv, env={**cli_env, "DYNAGRAPH_CONFIG": str(config)}, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not list((home / "runs").glob("*/cell-started")):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the cell never started: {proc.communicate()[1][-2000:]}")
        time.sleep(0.05)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    returncode, took, err = _finish(proc, sent)
    assert returncode == 130, err[-2000:]
    assert "Traceback" not in err and "Exception in thread" not in err, err[-2000:]
    summary, last = err.strip().splitlines()[-2:]
    assert summary.startswith("batch: 2 tasks: 0 done") and summary.endswith("(interrupted)")
    assert last == "interrupted (SIGINT)", err[-2000:]


#: Sends SIGINT to itself while dynagraph.tools.kernel.cell is half imported (in sys.modules,
#: ``cancel_running`` not yet defined), then runs the command: a Ctrl-C in the first second.
EARLY_SIGINT = """
import importlib.abc, os, signal, sys


class SignalMidImport(importlib.abc.MetaPathFinder):
    fired = False

    def find_spec(self, name, path, target=None):
        cell = sys.modules.get("dynagraph.tools.kernel.cell")
        if not self.fired and cell is not None and not hasattr(cell, "cancel_running"):
            SignalMidImport.fired = True
            os.kill(os.getpid(), signal.SIGINT)
        return None


sys.meta_path.insert(0, SignalMidImport())
from dynagraph.graphs.startup import main

sys.exit(main(["run", "anything", "-q"]))
"""


def test_ctrl_c_while_the_command_still_imports_ends_it_as_interrupted(cli_env, stub_env, tmp_path):
    """An attack sent SIGINT while the cell module was half imported: the handler's
    ``cancel_running`` lookup failed, the import swallowed the error, the signal's deadline never
    started and the run went on to the planner (exit 2 after 21 s, or a traceback). Now: exit
    130 at once, "interrupted", no traceback, no model request."""
    stub = stub_env["stub"]
    config = write_stub_config(
        tmp_path / "c.yaml", stub_env["base_url"], Path(cli_env["DYNAGRAPH_HOME"])
    )
    script = tmp_path / "early.py"
    script.write_text(EARLY_SIGINT, encoding="utf-8")
    env = {**cli_env, "DYNAGRAPH_CONFIG": str(config)}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=90)  # fmt: skip
    took = time.monotonic() - started
    print(f"early SIGINT: exit {proc.returncode} after {took:.2f} s")
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == "interrupted (SIGINT)", proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not stub.requests, "the task went on to the model after the Ctrl-C"
