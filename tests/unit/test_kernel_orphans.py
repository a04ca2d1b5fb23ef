"""No kernel outlives the process that started it, even when that process is SIGKILLed.

A child Python process starts a kernel stuck in a C loop (ipykernel's own parent poller is a
Python thread that such a loop starves), a warm pool, and a kernel started from a thread that
has since ended; the test SIGKILLs the child and watches every process below it disappear.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from dynagraph.tools.kernel import KernelSession

from tests.support.processes import descendants, running
from tests.support.sandbox import BWRAP, NO_BWRAP_WHY

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[2]

CHILD = """
import json, sys, threading, time
from pathlib import Path
from dynagraph.tools.kernel import KernelPool, KernelSession

root, sandbox = Path(sys.argv[1]), sys.argv[2]
busy = KernelSession(root / "busy", sandbox=sandbox)
busy.start()
threading.Thread(
    target=busy.execute, args=("sum(range(10**13))",), kwargs={"timeout": None}, daemon=True
).start()
pool = KernelPool(lambda w: KernelSession(w, sandbox=sandbox), 1, root / "slots")
assert pool.wait_ready(timeout=100)
held = []
starter = threading.Thread(
    target=lambda: held.append(KernelSession(root / "from-thread", sandbox=sandbox).__enter__())
)
starter.start()
starter.join()
time.sleep(0.5)  # the busy kernel is inside its C loop by now
print(json.dumps({"busy": busy.pid, "pooled": pool._ready[0].pid, "threaded": held[0].pid}))
sys.stdout.flush()
time.sleep(600)
"""


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux /proc")
@pytest.mark.parametrize("sandbox", ["none", "bwrap"])
def test_sigkill_of_the_agent_process_takes_every_kernel_with_it(
    sandbox: str, tmp_path: Path
) -> None:
    if sandbox == "bwrap" and BWRAP is None:
        pytest.skip(f"the sandbox cannot run here: {NO_BWRAP_WHY}")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path), sandbox],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
    )
    try:
        line = child.stdout.readline()  # type: ignore[union-attr]
        assert line, f"the child did not start its kernels: {child.stderr.read()}"  # type: ignore[union-attr]
        kernels = set(json.loads(line).values())
        below = descendants(child.pid)
        assert kernels <= below and running(kernels) == kernels  # all three alive before the kill
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        deadline = time.monotonic() + 20
        while running(below) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert running(below) == set(), "processes left behind by the killed agent"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        for pipe in (child.stdout, child.stderr):  # unclosed, they warn (ResourceWarning)
            if pipe is not None:
                pipe.close()


def test_a_kernel_outlives_the_thread_that_started_it(tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG fires when the forking *thread* ends: kernels are forked by a
    process-lifetime launcher thread, so a worker thread finishing does not kill its kernel."""
    sessions: list[KernelSession] = []
    starter = threading.Thread(target=lambda: sessions.append(KernelSession(tmp_path).__enter__()))
    starter.start()
    starter.join()
    (session,) = sessions
    try:
        time.sleep(0.5)  # a death signal would have arrived by now
        assert session.is_alive()
        result = session.execute("6 * 7")
        assert result.result == "42" and not result.restarted
    finally:
        session.shutdown()
