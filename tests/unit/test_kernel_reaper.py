"""Kernel shutdowns off the caller's path (reaper.py) and kernels started ahead (registry)."""

from __future__ import annotations

import threading
import time

import pytest
from dynagraph.tools.kernel import KernelError, KernelRegistry, KernelSession, reaper

from tests.support.librarian import count_scratch_starts
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(60)


class FakeSession:
    """Records start/shutdown; shutdown blocks until `release` is set."""

    def __init__(self, name: str = "k") -> None:
        self.name = name
        self.started = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.retired = False
        self.shut = False
        self.starts = 0

    def retire(self) -> None:
        self.retired = True

    def start(self) -> None:
        self.starts += 1
        self.started.set()

    def shutdown(self) -> None:
        self.release.wait(30)
        self.shut = True


def test_release_returns_before_the_shutdown_and_drain_waits_for_it() -> None:
    session = FakeSession()
    session.release.clear()  # the shutdown hangs until we say so
    registry = KernelRegistry(lambda _tid: session)  # type: ignore[arg-type,return-value]
    registry.get("t")
    registry.release("t")
    assert session.retired and not session.shut  # released: refused at once, not yet stopped
    assert registry.peek("t") is None
    assert reaper.pending() >= 1
    session.release.set()
    assert reaper.drain()
    assert session.shut


def test_reap_runs_the_cleanup_after_the_shutdown() -> None:
    order: list[str] = []
    session = FakeSession()
    session.shutdown = lambda: order.append("shutdown")  # type: ignore[method-assign]
    reaper.reap(session, then=lambda: order.append("cleanup"))  # type: ignore[arg-type]
    assert reaper.drain()
    assert order == ["shutdown", "cleanup"]


def test_retired_session_refuses_cells_and_after_shutdown_hooks_run(tmp_path) -> None:
    session = KernelSession(tmp_path / "w")  # never started: nothing to stop
    ran: list[str] = []
    session.after_shutdown.append(lambda: ran.append("hook"))
    session.retire()
    with pytest.raises(KernelError):
        session.execute("1")
    session.shutdown()
    session.shutdown()  # hooks run once
    assert ran == ["hook"]


def test_prestart_starts_the_kernel_that_get_then_returns() -> None:
    made: list[FakeSession] = []

    def factory(tid: str) -> FakeSession:
        made.append(FakeSession(tid))
        return made[-1]

    registry = KernelRegistry(factory)  # type: ignore[arg-type]
    registry.prestart("t")
    wait_for(lambda: bool(made) and made[0].started.is_set())  # built, started in the background
    assert made and made[0].starts == 1
    registry.prestart("t")  # already there: nothing new
    assert registry.get("t") is made[0]
    assert len(made) == 1
    registry.shutdown_all()
    assert made[0].shut


def gated_registry() -> tuple[KernelRegistry, threading.Event, list[FakeSession]]:
    """A registry whose sessions are built only once the returned gate is set."""
    gate = threading.Event()
    made: list[FakeSession] = []

    def slow_factory(tid: str) -> FakeSession:
        gate.wait(10)
        made.append(FakeSession(tid))
        return made[-1]

    return KernelRegistry(slow_factory), gate, made  # type: ignore[arg-type]


def test_prestart_then_release_before_it_is_built_leaves_nothing() -> None:
    registry, gate, made = gated_registry()
    registry.prestart("t")
    registry.release("t")  # the task ended before its kernel was even built
    gate.set()
    wait_for(lambda: bool(made) and made[0].shut)
    assert reaper.drain()
    assert made and made[0].shut and made[0].starts == 0  # reaped, never started
    assert registry.peek("t") is None


def test_get_during_a_prestart_waits_for_it_instead_of_starting_a_second_kernel() -> None:
    """The coder's ahead definitions (and the executor) may ask for the task's kernel while the
    planner's prestart is still building it: one kernel, not two."""
    registry, gate, made = gated_registry()
    registry.prestart("t")
    got: list[FakeSession] = []
    getter = threading.Thread(target=lambda: got.append(registry.get("t")))  # type: ignore[arg-type]
    getter.start()
    time.sleep(0.2)
    assert not got and not made  # waiting for the prestart, not building its own
    gate.set()
    getter.join(10)
    assert len(made) == 1 and got == [made[0]]
    registry.shutdown_all()


def _services_with_prestarted_scratch(tmp_path, monkeypatch, task: str):
    """Services (no sandbox: this is about hand-over and reaping) counting the scratch kernels
    they start, and a task folder with one started ahead."""
    from dynagraph.graphs.services import Services
    from dynagraph.graphs.settings import load_settings

    monkeypatch.setenv("DYNAGRAPH_HOME", str(tmp_path / "home"))
    settings = load_settings(None, **{"executor.sandbox": "none", "executor.pool_size": 0})
    services = Services(settings)
    made = count_scratch_starts(services)
    task_dir = services.workdir_for(task)
    task_dir.mkdir(parents=True)
    services.prestart_scratch(task_dir)
    return services, task_dir, made


def test_a_scratch_kernel_started_ahead_is_handed_to_the_librarian(tmp_path, monkeypatch) -> None:
    services, task_dir, made = _services_with_prestarted_scratch(tmp_path, monkeypatch, "t1")
    try:
        services.prestart_scratch(task_dir)  # once per task folder
        handed = services.scratch_kernel(tmp_path / "verifier-folder", cwd=task_dir)
        assert made == [handed] and handed.is_alive()
        other = services.scratch_kernel(tmp_path / "v2", cwd=task_dir)  # claimed: a new one now
        assert other is not handed and len(made) == 2
        services.release_scratch(handed)  # as the verifier hands its kernel back: kept warm
        services.release_scratch(other)  # one is kept at most: this one is reaped
    finally:
        services.close()
    assert reaper.drain() and not any(k.is_alive() for k in made)


def test_an_unclaimed_scratch_kernel_is_reaped_with_its_folder(tmp_path, monkeypatch) -> None:
    services, task_dir, made = _services_with_prestarted_scratch(tmp_path, monkeypatch, "t2")
    try:
        services.drop_scratch(task_dir)
        # built in the background, reaped once ready (the reap is queued just after the build)
        wait_for(lambda: bool(made) and not made[0].is_alive(), timeout=60)
        assert reaper.drain()
        assert not made[0].is_alive() and not made[0].workdir.exists()
        services.drop_scratch(task_dir)  # nothing left to drop: a no-op
    finally:
        services.close()


def test_close_waits_for_a_dropped_kernel_still_starting(tmp_path, monkeypatch) -> None:
    """A kernel started ahead and dropped (the task had nothing to verify) may still be starting
    when the process closes its services; interpreter exit under a start in progress closes the
    kernel's ZMQ sockets under the thread waiting on them, so close() waits for it and reaps it."""
    services, task_dir, made = _services_with_prestarted_scratch(tmp_path, monkeypatch, "t3")
    services.drop_scratch(task_dir)  # at once: the start (0.5-1 s) is still running
    services.close()
    assert len(made) == 1, "close() returned before the dropped kernel had started"
    assert not made[0].is_alive() and not made[0].workdir.exists()


def test_a_prestart_stopped_by_a_signal_ends_its_thread_without_a_traceback(monkeypatch) -> None:
    """A stop signal while the prestart thread starts the kernel makes its start raise
    CellCancelled (a KeyboardInterrupt): the thread ends quietly (an attack saw "Exception in
    thread dynagraph-kernel-prestart" printed before the command's own last line)."""
    from dynagraph.tools.kernel.cell import CellCancelled

    class StoppedSession(FakeSession):
        def start(self) -> None:
            raise CellCancelled("the process is stopping: the cell was not run")

    uncaught: list[str] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: uncaught.append(repr(args)))
    made: list[FakeSession] = []
    registry = KernelRegistry(lambda tid: made.append(StoppedSession(tid)) or made[-1])  # type: ignore[arg-type]
    registry.prestart("t")
    wait_for(lambda: not registry._prestart_threads)
    assert made and uncaught == []
    registry.shutdown_all()
