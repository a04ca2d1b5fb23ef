"""A process that ran kernels leaves nothing running in pyzmq that its exit could break.

A batch process once aborted at exit with libzmq's "Assertion failed: pfd.revents & POLLIN
(src/signaler.cpp:238)": jupyter_client sends a message part over 64 KiB (the kernels' startup
cell is one) zero-copy, which starts pyzmq's garbage-collector thread, and pyzmq closes that
thread's socket at exit while libzmq's I/O thread may still signal it. Our kernels' sessions copy
every message, so that thread never starts. A child process, so that no other test's sends count.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import running
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(120)

CHILD = """
import json, sys
from pathlib import Path
import zmq.utils.garbage
from dynagraph.tools.kernel import KernelSession

with KernelSession(Path(sys.argv[1]), sandbox="none") as kernel:
    big = "x = " + repr("y" * 200_000) + "\\nprint(len(x))"
    result = kernel.execute(big)
print(json.dumps({"out": result.stdout.strip(), "gc": zmq.utils.garbage.gc.is_alive()}))
"""


def test_a_large_cell_starts_no_zero_copy_collector(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "work")],
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["out"] == "200000", report
    assert report["gc"] is False, "a message went zero-copy: pyzmq's collector thread started"


def test_close_and_the_exit_finalizer_of_one_kernel_never_run_together(tmp_path):
    """At exit the finalizers run in the main thread while another thread may be closing the
    same kernel (a scratch kernel's start failing as the process stops): both closed one
    client and destroyed its zmq context at once, and libzmq aborted the process (SIGABRT,
    an attack's Ctrl-C during the librarian, ~1 in 20). One closes, the other finds it done."""
    import threading

    from dynagraph.tools.kernel import KernelSession

    for attempt in range(6):
        session = KernelSession(tmp_path / f"w{attempt}", sandbox="none")
        session.start()
        process = session._process
        runtime, pid = process.runtime_dir, process.pid
        finalizer = process._finalizer
        both = threading.Barrier(2)
        errors: list[BaseException] = []

        def close(process=process, both=both, errors=errors) -> None:
            both.wait(10)
            try:
                process.close()
            except BaseException as exc:
                errors.append(exc)

        closer = threading.Thread(target=close)
        closer.start()
        both.wait(10)
        finalizer()  # as weakref's exit function calls it
        closer.join(30)
        assert errors == [] and not closer.is_alive()
        assert not runtime.exists()
        assert wait_for(lambda pid=pid: not running({pid})), f"kernel {pid} still runs"
        process.close()  # and once more: nothing left to do
        session._process = None
