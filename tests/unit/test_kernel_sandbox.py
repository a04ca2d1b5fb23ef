"""KernelSession under bubblewrap: read-only system, writable workdir, no network, interrupts work,
hidden folders (DYNAGRAPH_HOME), its own PID namespace; choosing the sandbox (``auto``); the agent
made non-dumpable (tools/kernel/hardening.py).

Tests that need a working bwrap are skipped, with the reason, where it cannot run (Debian package
`bubblewrap`).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from dynagraph.tools.kernel import KernelError, KernelSession
from dynagraph.tools.kernel.hardening import bwrap_probe, resolve_sandbox

from tests.support.sandbox import BWRAP, needs_bwrap


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


@needs_bwrap
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


@needs_bwrap
@pytest.mark.timeout(60)
def test_tmp_is_private(offline: KernelSession, tmp_path: Path) -> None:
    # tmp_path may itself live under /tmp: the sandbox must not see it
    (tmp_path / "host-file").write_text("host")
    result = offline.execute(f"import os; os.path.exists({str(tmp_path / 'host-file')!r})")
    assert result.result == "False"


@needs_bwrap
@pytest.mark.timeout(60)
def test_no_network_when_network_is_off(offline: KernelSession, listener: int) -> None:
    result = offline.execute(_connect_code(listener))
    assert result.status == "error"
    assert result.error_name in ("ConnectionRefusedError", "OSError", "TimeoutError")


@needs_bwrap
@pytest.mark.timeout(60)
def test_network_on_reaches_the_same_listener(tmp_path: Path, listener: int) -> None:
    # the control for the test above: the same code connects when the network is shared
    with KernelSession(tmp_path, sandbox="bwrap", network=True) as online:
        result = online.execute(_connect_code(listener))
    assert result.ok(), result.to_observation()
    assert result.result == "'connected'"


@needs_bwrap
@pytest.mark.timeout(60)
def test_interrupt_works_in_the_sandbox(offline: KernelSession) -> None:
    assert offline.execute("kept = 41 + 1").ok()
    result = offline.execute("import time\nwhile True:\n    time.sleep(0.01)", timeout=1)
    assert result.status == "timeout"
    assert not result.restarted
    assert offline.execute("kept").result == "42"


@needs_bwrap
@pytest.mark.timeout(60)
def test_sandboxed_kernel_env_is_scrubbed(offline: KernelSession) -> None:
    result = offline.execute(
        "import os; sorted(k for k in ('DYNAGRAPH_TEST_SECRET_KEY', 'JPY_PARENT_PID') if k in os.environ)"
    )
    assert result.result == "[]"


@needs_bwrap
@pytest.mark.timeout(60)
def test_dead_sandboxed_kernel_is_restarted(offline: KernelSession) -> None:
    result = offline.execute("import os\nos._exit(3)", timeout=None)
    assert result.status == "died"
    assert result.restarted and result.namespace_lost
    assert offline.execute("'back'").result == "'back'"


# -- hidden folders, shared folders, the PID namespace ----------------------------------------


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DYNAGRAPH_HOME-like folder under /tmp, with a library file and two task folders."""
    home = tmp_path_factory.mktemp("home")
    (home / "library.db").write_bytes(b"SQLite format 3\x00library")
    (home / "runs" / "mine").mkdir(parents=True)
    (home / "runs" / "other").mkdir(parents=True)
    (home / "runs" / "other" / "private.txt").write_text("another task's file")
    return home


@pytest.fixture(scope="module")
def hidden_home(home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelSession]:
    outside = tmp_path_factory.mktemp("data") / "checkpoints.db"
    outside.write_text("checkpoint bytes")
    shared = tmp_path_factory.mktemp("shared")
    (shared / "input.csv").write_text("a,b\n1,2\n")
    session = KernelSession(
        home / "runs" / "mine",
        sandbox="auto",
        hide=[home, outside],
        share=[(shared, False)],
    )
    session.outside, session.shared = outside, shared  # type: ignore[attr-defined]
    with session:
        yield session


def _run(session: KernelSession, code: str) -> str:
    result = session.execute(code)
    assert result.ok(), result.to_observation()
    return result.result or ""


@needs_bwrap
@pytest.mark.timeout(60)
def test_auto_picks_bubblewrap_when_it_runs(hidden_home: KernelSession) -> None:
    assert hidden_home.sandbox == "bwrap"


@needs_bwrap
@pytest.mark.timeout(60)
def test_the_home_is_hidden_and_read_only_except_the_task_folder(
    hidden_home: KernelSession, home: Path
) -> None:
    library = home / "library.db"
    result = hidden_home.execute(f"open({str(library)!r}, 'ab')")
    assert result.status == "error" and "Read-only file system" in (result.error_value or "")
    assert _run(hidden_home, f"import os; sorted(os.listdir({str(home)!r}))") == "['runs']"
    assert _run(hidden_home, f"os.listdir({str(home / 'runs')!r})") == "['mine']"
    assert library.read_bytes() == b"SQLite format 3\x00library"  # untouched on the host
    assert _run(hidden_home, "open('out.txt', 'w').write('mine')") == "4"
    assert (home / "runs" / "mine" / "out.txt").read_text() == "mine"


@needs_bwrap
@pytest.mark.timeout(60)
def test_a_hidden_file_elsewhere_reads_empty_and_cannot_be_written(
    hidden_home: KernelSession,
) -> None:
    outside = hidden_home.outside  # type: ignore[attr-defined]
    assert _run(hidden_home, f"open({str(outside)!r}).read()") == "''"
    result = hidden_home.execute(f"open({str(outside)!r}, 'w')")
    assert result.status == "error", result.to_observation()
    assert outside.read_text() == "checkpoint bytes"


@needs_bwrap
@pytest.mark.timeout(60)
def test_a_shared_folder_is_visible_read_only(hidden_home: KernelSession) -> None:
    shared = hidden_home.shared  # type: ignore[attr-defined]
    assert _run(hidden_home, f"open({str(shared / 'input.csv')!r}).read()") == "'a,b\\n1,2\\n'"
    result = hidden_home.execute(f"open({str(shared / 'new.txt')!r}, 'w')")
    assert result.status == "error" and "Read-only" in (result.error_value or "")


@needs_bwrap
@pytest.mark.timeout(60)
def test_proc_shows_no_process_of_the_agent(hidden_home: KernelSession) -> None:
    code = (
        "import glob, os\n"
        "sorted(open(p, 'rb').read().split(b'\\0')[0].decode() "
        "for p in glob.glob('/proc/[0-9]*/cmdline'))"
    )
    programs = _run(hidden_home, code)  # argv[0] of every process the kernel can see
    assert programs == repr(sorted([str(BWRAP), sys.executable])), programs
    # only bwrap's init (pid 1) and the kernel: not this process, nor any other of the host
    assert _run(hidden_home, "len(glob.glob('/proc/[0-9]*'))") == "2"
    assert _run(hidden_home, "os.getppid()") == "1"
    assert len(list(Path("/proc").glob("[0-9]*"))) > 2  # the host's /proc, for contrast


@needs_bwrap
@pytest.mark.timeout(60)
def test_the_home_stays_hidden_inside_a_script_folder_under_tmp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A script in /tmp/project with DYNAGRAPH_HOME at /tmp/project/home: the sandbox binds the
    script's folder (on sys.path) back over its private /tmp, and must hide the home inside it
    again; before, the kernel did not start ("Can't remount readonly")."""
    project = tmp_path / "project"
    home = project / "home"
    (home / "runs" / "mine").mkdir(parents=True)
    (home / "library.db").write_bytes(b"SQLite format 3\x00library")
    (project / "script.py").write_text("print('the script')\n")
    monkeypatch.syspath_prepend(str(project))
    with KernelSession(home / "runs" / "mine", sandbox="bwrap", hide=[home]) as session:
        assert _run(session, f"import os; sorted(os.listdir({str(project)!r}))") == (
            "['home', 'script.py']"
        )
        assert _run(session, f"sorted(os.listdir({str(home)!r}))") == "['runs']"
        denied = session.execute(f"open({str(home / 'library.db')!r}, 'wb')")
        assert denied.status == "error", denied.to_observation()
    assert (home / "library.db").read_bytes() == b"SQLite format 3\x00library"


# -- the librarian's scratch kernel with DYNAGRAPH_HOME under /tmp ------------------------------


@needs_bwrap
@pytest.mark.timeout(120)
def test_the_scratch_kernel_replays_in_the_task_folder_under_a_tmp_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bug: the sandbox's private /tmp (and now the hidden home) hid the task's folder, so
    every candidate failed with "the scratch kernel could not be prepared"."""
    from dynagraph.graphs.services import Services
    from dynagraph.graphs.settings import load_settings
    from dynagraph.tools.librarian.scratch import ScratchVerifier

    monkeypatch.setenv("DYNAGRAPH_HOME", str(tmp_path / "home"))
    settings = load_settings(None, **{"executor.sandbox": "auto", "executor.pool_size": 0})
    services = Services(settings)
    task = services.workdir_for("thread-1")
    task.mkdir(parents=True)
    (task / "data.txt").write_text("41")
    source = "def read_number(path):\n    return int(open(path).read()) + 1\n"
    try:
        with ScratchVerifier(services.scratch_kernel, cwd=task) as v:
            assert v.session().sandbox == "bwrap"
            assert v.define([source]) is None
            assert v.session().execute("read_number('data.txt')").result == "42"
            absolute = v.session().execute(f"read_number({str(task / 'data.txt')!r})")
            assert absolute.result == "42"  # the task's folder at its own path
            result = v.session().execute("open('replay-output.txt', 'w').write('x')")
            assert result.ok(), result.to_observation()  # writable, in the kernel's view of it
        assert not (task / "replay-output.txt").exists()  # new files stay out of the task's

        def without_cwd(folder: Path, cwd: Path | None = None):  # the old factory
            return services.scratch_kernel(folder)

        with ScratchVerifier(without_cwd, cwd=task) as v, pytest.raises(RuntimeError) as caught:
            v.session()
        assert "could not be prepared" in str(caught.value)  # the control: the bug itself
    finally:
        services.close()


# -- choosing the sandbox; the agent process -----------------------------------------------------


def test_bwrap_missing_auto_falls_back_with_one_warning_line_per_process(tmp_path: Path) -> None:
    code = (
        "from dynagraph.tools.kernel.hardening import resolve_sandbox\n"
        f"missing = {str(tmp_path / 'no-bwrap')!r}\n"
        "for _ in range(3):\n"
        "    choice = resolve_sandbox('auto', missing)\n"
        "print(choice.mode)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "none"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "WITHOUT a sandbox" in lines[0] and "apt-get install bubblewrap" in lines[0]


def test_bwrap_asked_for_but_missing_or_broken_is_a_one_line_exit_2_error(tmp_path: Path) -> None:
    with pytest.raises(KernelError) as missing:
        resolve_sandbox("bwrap", str(tmp_path / "no-bwrap"))
    assert missing.value.exit_code == 2 and "apt-get install" in str(missing.value)
    broken = tmp_path / "broken-bwrap"
    broken.write_text(
        "#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n"
    )
    broken.chmod(0o755)
    with pytest.raises(KernelError) as failed:
        resolve_sandbox("bwrap", str(broken))
    assert "cannot create a sandbox here" in str(failed.value)
    assert "No permissions to create new namespace" in str(failed.value)
    assert "\n" not in str(failed.value)
    assert resolve_sandbox("none", str(broken)).mode == "none"
    with pytest.raises(KernelError, match="network=False needs a sandbox"):
        KernelSession(tmp_path, sandbox="auto", network=False, bwrap=str(broken))


PROTECT_CHILD = """
import ctypes, os, subprocess, sys
from dynagraph.tools.kernel.hardening import PR_SET_DUMPABLE, protect_agent_process
if os.geteuid() == 0:  # the protection is for users: act as one, dumpable as users' processes
    os.setgid(65534)  # are (changing uid made this one non-dumpable: undo that)
    os.setuid(65534)
    assert ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) == 0
if sys.argv[1] == "protect":
    print(protect_agent_process())
seen = subprocess.run(["cat", f"/proc/{os.getpid()}/environ"], capture_output=True)
print("LEAK" if b"sk-test-SECRET" in seen.stdout else "HIDDEN")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_DUMPABLE is Linux only")
@pytest.mark.parametrize("mode", ["protect", "control"])
def test_a_user_agent_is_non_dumpable_so_its_children_cannot_read_its_environ(mode: str) -> None:
    env = {**os.environ, "DYNAGRAPH_TEST_API_KEY": "sk-test-SECRET"}
    proc = subprocess.run(
        [sys.executable, "-c", PROTECT_CHILD, mode],
        capture_output=True, text=True, timeout=60, env=env, cwd="/",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    if mode == "protect":
        assert lines == [
            "made non-dumpable: /proc/<pid> entries of the agent are root-owned",
            "HIDDEN",
        ]
    else:
        assert lines == ["LEAK"]  # the same child, not protected: the test can fail


def test_protection_happens_at_the_first_kernel_not_at_import(tmp_path: Path) -> None:
    code = (
        "import dynagraph.graphs.services\n"
        "from dynagraph.tools.kernel import hardening, KernelSession\n"
        "print(hardening._protected)\n"
        f"with KernelSession({str(tmp_path)!r}) as s:\n"
        "    pass\n"
        "print(hardening._protected)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    before, after = proc.stdout.strip().splitlines()
    assert before == "None"
    expected = "nothing: running as root" if os.geteuid() == 0 else "made non-dumpable"
    assert after.startswith(expected)


@needs_bwrap
def test_the_probe_holds_when_the_interpreter_lives_under_tmp(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """CI clones (and their venvs) live under /tmp, which the sandbox replaces with a private
    tmpfs: the probe must not run the interpreter from there, or ``auto`` falls back to no
    sandbox on exactly the machines that test it (launch.py binds the venv back itself)."""
    monkeypatch.setattr(sys, "executable", str(tmp_path / "venv" / "bin" / "python"))
    bwrap_probe.cache_clear()
    try:
        assert bwrap_probe() == (BWRAP, "")
    finally:
        bwrap_probe.cache_clear()


@needs_bwrap
@pytest.mark.timeout(90)
def test_a_runtime_folder_inside_a_read_only_shared_folder_stays_writable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``TMPDIR`` inside the folder shared read-only (``library add`` of a file there): the
    kernel's runtime folder (its sockets) is bound after the share that holds it; before, the
    share covered it and the kernel did not start ("Read-only file system")."""
    shared = Path(tempfile.mkdtemp(prefix="dg-", dir="/tmp"))  # short: the sockets live in it
    try:
        (shared / "tmp").mkdir()
        (shared / "input.txt").write_text("data")
        monkeypatch.setenv("TMPDIR", str(shared / "tmp"))
        monkeypatch.setattr(tempfile, "tempdir", str(shared / "tmp"))  # gettempdir() caches it
        session = KernelSession(tmp_path / "work", sandbox="bwrap", share=[(shared, False)])
        with session:
            assert session.execute("1 + 1").status == "ok"
            assert _run(session, f"open({str(shared / 'input.txt')!r}).read()") == "'data'"
            denied = session.execute(f"open({str(shared / 'new.txt')!r}, 'w')")
            assert denied.status == "error" and "Read-only" in (denied.error_value or "")
    finally:
        shutil.rmtree(shared, ignore_errors=True)


@pytest.mark.timeout(90)
def test_a_kernel_starts_under_a_temp_folder_too_long_for_its_sockets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ipc socket's path holds at most 107 bytes: under a long ``TMPDIR`` the runtime folder
    goes to /tmp instead; before, the kernel did not start ("File name too long")."""
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    with KernelSession(tmp_path / "work") as session:
        assert session.execute("6 * 7").status == "ok"
