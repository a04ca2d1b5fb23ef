"""KernelSession under bubblewrap: read-only system, writable workdir, no network, interrupts work.

Skipped where bwrap is not installed (Debian package `bubblewrap`).
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from dynagraph.tools.kernel import KernelSession

pytestmark = pytest.mark.skipif(
    shutil.which("bwrap") is None,
    reason="bubblewrap is not installed (apt-get install -y bubblewrap)",
)


@pytest.fixture(scope="module")
def listener() -> Iterator[int]:
    """A listening TCP socket on this host's loopback; yields its port."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelSession]:
    workdir = tmp_path_factory.mktemp("sandbox") / "work"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DYNAGRAPH_TEST_SECRET_KEY", "do-not-leak")
        session = KernelSession(workdir, sandbox="bwrap", network=False, memory_limit_mb=2048)
    with session:
        yield session


def _connect_code(port: int) -> str:
    return (
        "import socket\n"
        f"socket.create_connection(('127.0.0.1', {port}), timeout=5).close()\n"
        "'connected'"
    )


@pytest.mark.timeout(60)
def test_writes_outside_the_workdir_fail_inside_it_work(offline: KernelSession) -> None:
    outside = offline.execute("open('/opt/dynagraph-sandbox-probe', 'w')")
    assert outside.status == "error"
    assert outside.error_name == "OSError"
    assert "Read-only file system" in (outside.error_value or "")
    assert not Path("/opt/dynagraph-sandbox-probe").exists()

    inside = offline.execute("open('note.txt', 'w').write('from the sandbox')")
    assert inside.ok(), inside.to_observation()
    assert (offline.workdir / "note.txt").read_text() == "from the sandbox"


@pytest.mark.timeout(60)
def test_tmp_is_private(offline: KernelSession, tmp_path: Path) -> None:
    # tmp_path may itself live under /tmp: the sandbox must not see it
    (tmp_path / "host-file").write_text("host")
    result = offline.execute(f"import os; os.path.exists({str(tmp_path / 'host-file')!r})")
    assert result.result == "False"


@pytest.mark.timeout(60)
def test_no_network_when_network_is_off(offline: KernelSession, listener: int) -> None:
    result = offline.execute(_connect_code(listener))
    assert result.status == "error"
    assert result.error_name in ("ConnectionRefusedError", "OSError", "TimeoutError")


@pytest.mark.timeout(60)
def test_network_on_reaches_the_same_listener(tmp_path: Path, listener: int) -> None:
    # the control for the test above: the same code connects when the network is shared
    with KernelSession(tmp_path, sandbox="bwrap", network=True) as online:
        result = online.execute(_connect_code(listener))
    assert result.ok(), result.to_observation()
    assert result.result == "'connected'"


@pytest.mark.timeout(60)
def test_interrupt_works_in_the_sandbox(offline: KernelSession) -> None:
    assert offline.execute("kept = 41 + 1").ok()
    result = offline.execute("import time\nwhile True:\n    time.sleep(0.01)", timeout=1)
    assert result.status == "timeout"
    assert not result.restarted
    assert offline.execute("kept").result == "42"


@pytest.mark.timeout(60)
def test_sandboxed_kernel_env_is_scrubbed(offline: KernelSession) -> None:
    result = offline.execute(
        "import os; sorted(k for k in ('DYNAGRAPH_TEST_SECRET_KEY', 'JPY_PARENT_PID') if k in os.environ)"
    )
    assert result.result == "[]"


@pytest.mark.timeout(60)
def test_dead_sandboxed_kernel_is_restarted(offline: KernelSession) -> None:
    result = offline.execute("import os\nos._exit(3)", timeout=None)
    assert result.status == "died"
    assert result.restarted and result.namespace_lost
    assert offline.execute("'back'").result == "'back'"
