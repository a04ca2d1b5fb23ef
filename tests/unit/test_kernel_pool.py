"""KernelPool against real kernels: warm takes, workdirs, bootstrap paid in advance, no reuse.

A warm take is recognised by the pool's counters and by the kernel's pid existing before the
take, never by timing (the machines are noisy).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dynagraph.tools.kernel import KernelPool, KernelSession

from tests.support.sandbox import needs_bwrap

pytestmark = pytest.mark.timeout(120)

# the bootstrap: counts how often it ran in this kernel process
SETUP = "__setup_runs__ = globals().get('__setup_runs__', 0) + 1"


def session_factory(sandbox: str = "none") -> Callable[[Path], KernelSession]:
    def make(workdir: Path) -> KernelSession:
        return KernelSession(workdir, bootstrap=SETUP, sandbox=sandbox, grace_s=0.5)  # type: ignore[arg-type]

    return make


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[KernelPool]:
    with KernelPool(session_factory(), 2, tmp_path / "slots") as pool:
        assert pool.wait_ready(), "the pool did not warm up"
        yield pool


def test_warm_take_is_started_bootstrapped_and_in_the_task_workdir(
    pool: KernelPool, tmp_path: Path
) -> None:
    waiting_pids = {s.pid for s in list(pool._ready)}
    slot = pool._ready[0].workdir  # take() hands out the oldest waiting kernel
    workdir = tmp_path / "runs" / "thread-1"
    session = pool.take(workdir)
    try:
        assert pool.stats.taken_warm == 1 and pool.stats.taken_cold == 0
        assert session.pid in waiting_pids  # it was running before the task asked for it
        assert session.workdir == workdir.resolve()
        assert session.execute("import os; os.getcwd()").result == repr(str(workdir.resolve()))
        session.start()  # what KernelRegistry.get does: a no-op for a warm kernel
        assert session.execute("__setup_runs__").result == "1"  # paid once, while it waited
        # files and images land in the task's directory; the slot is gone
        session.execute("open('made-here.txt', 'w').write('x')")
        assert (workdir / "made-here.txt").exists()
        shown = session.execute(
            "from IPython.display import Image, display\n"
            "display(Image(data=b'\\x89PNG\\r\\n\\x1a\\n' + bytes(16), format='png'))"
        )
        assert shown.files and (workdir / shown.files[0]).is_file(), shown.to_observation()
        assert not slot.exists()
    finally:
        session.shutdown()


def test_taken_kernels_are_never_reused_and_the_pool_refills(
    pool: KernelPool, tmp_path: Path
) -> None:
    first = pool.take(tmp_path / "a")
    second = pool.take(tmp_path / "b")
    try:
        assert first.pid != second.pid
        assert pool.stats.taken_warm == 2
        first_pid = first.pid
        assert first_pid is not None
        first.shutdown()  # a finished task's kernel is shut down, not given back
        assert gone(first_pid)
        assert pool.wait_ready(2), "the pool did not refill"
        assert pool.stats.warmed == 4
        fresh = {s.pid for s in list(pool._ready)}
        assert first_pid not in fresh and second.pid not in fresh
    finally:
        first.shutdown()
        second.shutdown()


def test_restart_of_a_moved_kernel_starts_in_the_task_workdir_with_setup(
    pool: KernelPool, tmp_path: Path
) -> None:
    workdir = tmp_path / "runs" / "restarts"
    with pool.take(workdir) as session:
        session.execute("x = 1")
        died = session.execute("import os; os._exit(1)")
        assert died.status == "died" and died.restarted
        assert session.execute("import os; os.getcwd()").result == repr(str(workdir.resolve()))
        assert session.execute("__setup_runs__").result == "1"  # setup ran again, once
        assert session.execute("x").status == "error"  # a new process: namespace lost


def test_take_beyond_the_pool_gives_an_unstarted_cold_kernel(tmp_path: Path) -> None:
    with KernelPool(session_factory(), 0, tmp_path / "slots") as pool:
        session = pool.take(tmp_path / "cold")
        try:
            assert pool.stats.taken_cold == 1
            assert session.pid is None  # the caller starts it, outside any lock of its own
            session.start()
            assert session.execute("__setup_runs__").result == "1"
        finally:
            session.shutdown()


def test_a_pooled_kernel_that_died_while_waiting_is_discarded(
    pool: KernelPool, tmp_path: Path
) -> None:
    victim = pool._ready[0]
    assert victim.pid is not None
    os.kill(victim.pid, 9)
    victim._process.km.provisioner.process.wait(10)  # type: ignore[union-attr]
    with pool.take(tmp_path / "next") as session:
        assert session is not victim
        assert session.execute("1 + 1").result == "2"
    assert pool.stats.discarded == 1


def test_close_shuts_down_every_waiting_kernel_and_removes_slots(tmp_path: Path) -> None:
    pool = KernelPool(session_factory(), 2, tmp_path / "slots")
    assert pool.wait_ready()
    pids = [s.pid for s in list(pool._ready)]
    pool.close()
    assert all(pid is not None and gone(pid) for pid in pids)
    assert not (tmp_path / "slots").exists()  # no slot left, nor their folder
    assert pool.take(tmp_path / "after").pid is None  # closed: cold kernels only


@needs_bwrap
def test_sandboxed_pool_links_the_task_workdir_to_the_kernel_slot(tmp_path: Path) -> None:
    with KernelPool(session_factory("bwrap"), 1, tmp_path / "slots") as pool:
        assert pool.wait_ready()
        workdir = tmp_path / "runs" / "sandboxed"
        with pool.take(workdir) as session:
            assert pool.stats.taken_warm == 1
            assert workdir.is_symlink() and workdir.resolve() == session.workdir
            wrote = session.execute("open('result.txt', 'w').write('inside'); 'ok'")
            assert wrote.ok(), wrote.to_observation()
            assert (workdir / "result.txt").read_text() == "inside"
            session.execute(f"open({str(tmp_path / 'escape.txt')!r}, 'w')")  # private /tmp
            assert not (tmp_path / "escape.txt").exists()
        # a task whose directory already exists cannot use a sandboxed slot: cold kernel
        assert pool.wait_ready()
        existing = tmp_path / "runs" / "existing"
        existing.mkdir()
        cold = pool.take(existing)
        try:
            assert pool.stats.taken_cold == 1 and cold.pid is None
            assert len(pool._ready) == 1  # the warm kernel stays for the next task
            cold.start()
            assert cold.execute("import os; os.getcwd()").result == repr(str(existing.resolve()))
        finally:
            cold.shutdown()
    assert (workdir / "result.txt").read_text() == "inside"  # the task's slot stays


def test_the_refill_survives_a_failing_factory(tmp_path: Path) -> None:
    calls: list[Path] = []

    def flaky(workdir: Path) -> KernelSession:
        calls.append(workdir)
        if len(calls) == 1:
            raise SystemError("AST constructor recursion depth mismatch")  # seen on CPython 3.11
        return KernelSession(workdir, bootstrap=SETUP)

    with KernelPool(flaky, 1, tmp_path / "slots") as pool:
        assert pool.wait_ready(), "the refill thread died with its first kernel"
        assert pool.stats.failed == 1 and pool.stats.warmed == 1
