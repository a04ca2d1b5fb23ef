"""The session alone runs the bootstrap: exactly once per kernel start and once per restart,
whatever caused the restart, and nobody else runs it again (registry, executor, scratch kernel).

The bootstrap appends one character to a file in the kernel's working directory, so the count
is read from what the kernel processes actually did, not from a host-side counter.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from dynagraph.graphs.services import Services
from dynagraph.graphs.settings import load_settings
from dynagraph.nodes.executor import ExecutorNode
from dynagraph.tools.kernel import KernelSession, probes

pytestmark = pytest.mark.timeout(120)

COUNTING = probes.BOOTSTRAP + "open('bootstrap.log', 'a').write('x')\n"


def runs(workdir: Path) -> int:
    log = workdir / "bootstrap.log"
    return len(log.read_text()) if log.exists() else 0


def test_once_per_start_and_once_per_restart_whatever_the_cause(tmp_path: Path) -> None:
    built: list[int] = []

    def bootstrap() -> str:
        built.append(1)
        return COUNTING

    seen_by_hooks: list[int] = []
    session = KernelSession(tmp_path / "work", bootstrap=bootstrap, grace_s=0.5)
    session.on_restart.append(lambda s: seen_by_hooks.append(runs(s.workdir)))
    with session:
        workdir = session.workdir
        assert runs(workdir) == 1
        session.start()  # a started session: no-op
        for i in range(5):
            assert session.execute(f"x = {i}").ok()
        assert session.execute("def f(): return 1\nf()").result == "1"
        assert runs(workdir) == 1  # cells never re-run it

        session.restart()
        assert runs(workdir) == 2

        stuck = session.execute("sum(range(10**12))", timeout=0.5)  # SIGINT cannot stop it
        assert stuck.status == "timeout" and stuck.restarted
        assert runs(workdir) == 3

        died = session.execute("import os; os._exit(3)")
        assert died.status == "died" and died.restarted
        assert runs(workdir) == 4

        pid = session.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # dies between cells: restarted before the next one
        deadline = time.monotonic() + 10
        while session.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        after = session.execute("'probe recorder' if '__dynagraph_fetch__' in globals() else ''")
        assert after.restarted and after.result == "'probe recorder'"
        assert runs(workdir) == 5
    assert session.restarts == 4
    assert seen_by_hooks == [2, 3, 4, 5]  # hooks run after the bootstrap, once per restart
    assert len(built) == 5


def test_a_failing_bootstrap_fails_the_start(tmp_path: Path) -> None:
    session = KernelSession(tmp_path, bootstrap="raise ValueError('no actions today')")
    with pytest.raises(Exception, match="no actions today"):
        session.start()
    assert session.pid is None


@pytest.fixture
def services(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    settings = load_settings(None, **{"executor.workdir": str(tmp_path / "runs")})
    built = Services(settings)
    monkeypatch.setattr(built, "kernel_bootstrap", lambda: COUNTING)
    yield built
    built.close()


def test_task_kernels_are_bootstrapped_by_their_session_only(services: Services) -> None:
    executor = ExecutorNode(services)
    session = executor.session_for("thread-1")
    assert executor.session_for("thread-1") is session
    workdir = session.workdir
    assert runs(workdir) == 1
    result, (recorded, calls) = probes.execute_with_probes(
        session, "def g(x):\n    return x + 1\ng(1)", 10
    )
    assert result.ok() and calls["g"]["calls"] == 1 and recorded["g"][0]["result_repr"] == "2"
    assert session.execute("import os; os._exit(1)").restarted
    assert session.execute("g").status == "error"  # a new process...
    assert runs(workdir) == 2  # ...bootstrapped once, by the session, not again by the executor


def test_scratch_kernels_are_bootstrapped_by_their_session_only(
    services: Services, tmp_path: Path
) -> None:
    session = services.scratch_kernel(tmp_path / "scratch")
    try:
        assert runs(session.workdir) == 1
        assert session.execute("'__dynagraph_probe__' in globals()").result == "True"
        session.restart()
        assert runs(session.workdir) == 2
    finally:
        session.shutdown()
