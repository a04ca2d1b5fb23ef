"""Nothing leaks when kernels come and go: no event loop, socket or file descriptor.

jupyter_client's blocking calls make an event loop per calling thread and never close it; a
dropped client keeps its zmq sockets open. Each surfaced as a ResourceWarning collected by gc in
some later, unrelated test. Kernels here are used the way the agent uses them: from short-lived
threads (LangGraph's per-run pool, batch workers, the reaper's shutdown threads).
"""

from __future__ import annotations

import gc
import os
import threading
import warnings
from pathlib import Path

import pytest
from dynagraph.tools.kernel import KernelSession, reaper

pytestmark = pytest.mark.timeout(180)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _one_task(workdir: Path, *, reap: bool) -> None:
    session = KernelSession(workdir, sandbox="none")
    session.start()
    assert session.execute("print('hi')", timeout=30).stdout == "hi\n"
    session.interrupt()  # every blocking call the agent makes: start, is_alive, interrupt, ...
    if reap:
        reaper.reap(session)  # shut down in a thread of its own
    else:
        session.shutdown()


def _in_thread(target, *args, **kwargs) -> None:
    thread = threading.Thread(target=target, args=args, kwargs=kwargs)
    thread.start()
    thread.join(120)
    assert not thread.is_alive()


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux /proc")
def test_kernels_used_from_short_lived_threads_leave_nothing_open(tmp_path: Path) -> None:
    _in_thread(_one_task, tmp_path / "warm-up", reap=False)  # imports, caches, the launcher
    gc.collect()
    before = _open_fds()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for index in range(4):
            _in_thread(_one_task, tmp_path / f"task-{index}", reap=index % 2 == 1)
        assert reaper.drain(60)
        gc.collect()
    after = _open_fds()
    print(f"open fds: {before} before, {after} after 4 kernels")
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == [], leaks
    assert after <= before + 2, f"{after - before} file descriptors left open by 4 kernels"


def test_a_dropped_session_closes_its_client(tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        session = KernelSession(tmp_path, sandbox="none")
        session.start()
        del session  # never shut down: its finalizer must close the client's sockets too
        gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == [], leaks


#: Three ways a cell leaves a process running: a child in a session of its own, a daemon (fork,
#: setsid, fork: its parent exits at once) and a plain child (in the kernel's process group).
BACKGROUND = """
import os, subprocess
own_session = subprocess.Popen(['sleep', '600'], start_new_session=True).pid
plain = subprocess.Popen(['sleep', '600']).pid
read, write = os.pipe()
first = os.fork()
if first == 0:
    os.setsid()
    second = os.fork()
    if second == 0:
        os.execvp('sleep', ['sleep', '600'])
    os.write(write, str(second).encode())
    os._exit(0)
os.waitpid(first, 0)
daemon = int(os.read(read, 32))
print(own_session, plain, daemon)
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("end", ["shutdown", "restart"])
def test_an_unsandboxed_kernels_background_processes_end_with_it(tmp_path: Path, end: str):
    """Without bubblewrap's PID namespace, a cell's process in a session of its own and a
    double-forked daemon outlived the kernel, the task and the agent (an attack found them
    re-parented to init): they end with the kernel now, at shutdown and at a restart."""
    from tests.support.processes import running
    from tests.support.waiting import wait_for

    session = KernelSession(tmp_path, sandbox="none")
    session.start()
    pids: set[int] = set()
    try:
        shown = session.execute(BACKGROUND, timeout=30)
        pids = {int(p) for p in shown.stdout.split()}
        assert len(pids) == 3 and running(pids) == pids, shown.to_observation()
        if end == "restart":
            session.restart()
            assert session.execute("print(1)", timeout=30).stdout == "1\n"
        else:
            session.shutdown()
        assert wait_for(lambda: not running(pids), timeout=10), f"still running: {running(pids)}"
    finally:
        session.shutdown()
        for pid in running(pids):  # a failed check must not leave them to the next tests
            os.kill(pid, 9)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_a_pid_no_longer_the_kernels_has_its_processes_left_alone(tmp_path: Path):
    """The kernel's pid is checked to still be the kernel (its start time) before its process
    tree is taken to be killed: an attack had the pid of a dead kernel given to another
    process, whose children the shutdown then killed."""
    session = KernelSession(tmp_path, sandbox="none")
    session.start()
    try:
        child = int(session.execute(BACKGROUND, timeout=30).stdout.split()[0])
        process, started = session._process, session._process._started
        assert child in process._background_processes()
        process._started = "1"  # as if the pid now belonged to a process started at boot
        assert process._background_processes() == {}
        process._started = started  # the shutdown ends them
    finally:
        session.shutdown()
