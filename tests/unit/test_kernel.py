"""KernelSession against a real ipykernel: output, errors, limits, timeouts, deaths, restarts.

Two module-scoped sessions keep the file fast: `kernel` never restarts (its namespace carries
across tests), `restartable` is the one that timeouts, crashes and broken messaging may restart.
"""

from __future__ import annotations

import gc
import os
import random
import re
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dynagraph.tools.kernel import (
    NAMESPACE_LOST_NOTE,
    ExecutionResult,
    KernelError,
    KernelRegistry,
    KernelSession,
    OutputCapture,
    head_tail,
    html_to_text,
    reaper,
    scrubbed_env,
)

ANSI_ESCAPE = "\x1b["


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelSession]:
    """A kernel started while secrets and a probe variable were in this process's environment."""
    workdir = tmp_path_factory.mktemp("kernel") / "work"  # does not exist yet: start creates it
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DYNAGRAPH_TEST_SECRET_KEY", "do-not-leak")
        patch.setenv("OPENAI_API_KEY", "sk-do-not-leak")
        patch.setenv("LC_DYNAGRAPH_PROBE", "visible")
        session = KernelSession(workdir, memory_limit_mb=2048)
    with session:
        yield session


@pytest.fixture(scope="module")
def restartable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelSession]:
    with KernelSession(tmp_path_factory.mktemp("restartable"), grace_s=0.5) as session:
        yield session


# --------------------------------------------------------------------------- pure helpers


def _merged_runs(chars: list[tuple[str, str]]) -> list[tuple[str, str]]:
    runs: list[tuple[str, str]] = []
    for kind, char in chars:
        if runs and runs[-1][0] == kind:
            runs[-1] = (kind, runs[-1][1] + char)
        else:
            runs.append((kind, char))
    return runs


def test_output_capture_keeps_exact_head_and_tail_of_interleaved_streams() -> None:
    rng = random.Random(7)
    chunks = [(rng.choice(["stdout", "stderr"]), f"{i};" * rng.randint(1, 40)) for i in range(3000)]
    capture = OutputCapture(1000)
    for kind, text in chunks:
        capture.add(kind, text)
    chars = [(kind, char) for kind, text in chunks for char in text]
    expected_cut = len(chars) - 1000
    expected = [
        *_merged_runs(chars[:500]),
        ("truncated", f"[... {expected_cut} characters cut ...]"),
        *_merged_runs(chars[-500:]),
    ]
    assert capture.cut == expected_cut
    assert capture.items() == expected


def test_output_capture_memory_stays_bounded_for_huge_output() -> None:
    capture = OutputCapture(2000)
    for _ in range(5000):
        capture.add("stdout", "x" * 10_000)
        assert capture.head_len + capture.tail_len <= 2000
    assert capture.cut == 5000 * 10_000 - 2000


def test_head_tail_fits_the_limit_marker_included_and_counts_the_cut() -> None:
    text, cut = head_tail("a" * 10 + "b" * 1000 + "c" * 10, 60)
    marker = f"[... {cut} characters cut ...]"
    assert len(text) <= 60
    assert text.startswith("a" * 10) and text.endswith("c" * 10)
    assert marker in text
    assert len(text) - len(marker) - 2 + cut == 1020  # kept + cut = everything
    assert head_tail("short", 20) == ("short", 0)


def test_html_to_text_strips_tags_scripts_and_entities() -> None:
    text = html_to_text(
        "<style>td {color: red}</style><table><tr><th>name</th><th>n</th></tr>"
        "<tr><td>a &amp; b</td><td>3</td></tr></table><script>alert(1)</script>"
    )
    assert text.splitlines() == ["name n", "a & b 3"]


def test_scrubbed_env_drops_secrets_even_when_allowlisted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    monkeypatch.setenv("LC_SECRET_TOKEN", "t")  # allowlisted by LC_*, dropped by *TOKEN*
    monkeypatch.setenv("LC_PAPER", "a4")
    monkeypatch.setenv("HTTPS_PROXY", "http://user:pw@proxy:3128")
    monkeypatch.setenv("NO_PROXY", "localhost")
    monkeypatch.setenv("UNLISTED_VARIABLE", "1")
    env = scrubbed_env(
        extra={"GITHUB_TOKEN": "ghp", "TASK_ID": "7"}, allow=("LC_*", "*PROXY", "OPENAI_API_KEY")
    )
    assert env["LC_PAPER"] == "a4"
    assert env["NO_PROXY"] == "localhost"
    assert env["TASK_ID"] == "7"
    assert env["MPLBACKEND"] == "Agg"
    for absent in (
        "OPENAI_API_KEY",
        "LC_SECRET_TOKEN",
        "HTTPS_PROXY",
        "UNLISTED_VARIABLE",
        "GITHUB_TOKEN",
    ):
        assert absent not in env


def test_observation_fits_max_chars_and_says_what_happened() -> None:
    result = ExecutionResult(
        status="timeout",
        outputs=[("stdout", "o" * 30_000), ("error", "Traceback\nKeyboardInterrupt")],
        traceback="Traceback (most recent call last):\n" + "  frame\n" * 2000 + "KeyboardInterrupt",
        error_name="KeyboardInterrupt",
        restarted=True,
        namespace_lost=True,
        timeout_s=5,
        files=["outputs/figure-1.png"],
    )
    text = result.to_observation(max_chars=3000)
    assert len(text) <= 3000
    assert text.startswith("status: timeout")
    assert "restarted" in text.splitlines()[0]
    assert NAMESPACE_LOST_NOTE in text
    assert "outputs/figure-1.png" in text
    assert "characters cut ...]" in text
    assert text.rstrip().splitlines()[-3:][0] != ""  # notes are kept whole at the end
    assert "KeyboardInterrupt" in text


def test_missing_bwrap_is_a_one_line_kernel_error(tmp_path: Path) -> None:
    with pytest.raises(KernelError) as raised:
        KernelSession(tmp_path, sandbox="bwrap", bwrap=str(tmp_path / "no-such-bwrap"))
    message = str(raised.value)
    assert "\n" not in message
    assert "apt-get install -y bubblewrap" in message


def test_network_off_needs_the_sandbox(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bwrap"):
        KernelSession(tmp_path, network=False)


# --------------------------------------------------------------------------- shared kernel


@pytest.mark.timeout(60)
def test_streams_in_order_and_result(kernel: KernelSession) -> None:
    result = kernel.execute(
        "import sys\n"
        "print('one', flush=True)\n"
        "print('two', file=sys.stderr, flush=True)\n"
        "print('three', flush=True)\n"
        "6 * 7"
    )
    assert result.status == "ok" and result.ok()
    assert result.outputs == [
        ("stdout", "one\n"),
        ("stderr", "two\n"),
        ("stdout", "three\n"),
        ("result", "42"),
    ]
    assert result.stdout == "one\nthree\n"
    assert result.stderr == "two\n"
    assert result.result == "42"
    assert result.truncated_chars == 0
    observation = result.to_observation()
    assert observation.index("one") < observation.index("two") < observation.index("three")
    assert "42" in observation


def test_the_kernel_does_not_sleep_after_a_cell_and_no_output_is_lost(
    kernel: KernelSession,
) -> None:
    """ipykernel's 0.5 ms sleep after each cell (``Kernel._execute_sleep``) is off: our receive
    loop ends at the idle status, which follows the outputs; each cell's last output (with no
    newline, on both streams) still arrives whole."""
    assert kernel.execute("get_ipython().kernel._execute_sleep").result == "0.0"
    for i in range(200):
        result = kernel.execute(
            f"import sys\nprint('a' * 5000 + '{i}', end='')\nsys.stderr.write('e{i}')"
        )
        assert result.stdout == "a" * 5000 + str(i)
        assert result.stderr == f"e{i}"


def test_a_flush_with_nothing_to_send_returns_at_once(kernel: KernelSession) -> None:
    """kernel_side/cell_costs.py: a flush of an empty stream hands nothing to ipykernel's
    IOPub thread (the stock one hands it two callbacks and waits), and one with data still
    does; the text arrives whole."""
    result = kernel.execute(
        "import sys\n"
        "pub = sys.stdout.pub_thread\n"
        "calls = []\n"
        "schedule = pub.schedule\n"
        "pub.schedule = lambda f: (calls.append(f), schedule(f))[1]\n"
        "try:\n"
        "    sys.stdout.flush()\n"
        "    sys.stderr.flush()\n"
        "    empty = len(calls)\n"
        "    sys.stdout.write('x')\n"
        "    written = len(calls)\n"
        "    sys.stdout.flush()\n"
        "    full = len(calls) - written\n"
        "finally:\n"
        "    del pub.schedule\n"
        "print('', empty, full > 0)"
    )
    assert result.status == "ok", result.to_observation()
    assert result.stdout == "x 0 True\n"


def test_a_cell_s_last_output_at_the_file_descriptors_stays_with_its_cell(
    kernel: KernelSession,
) -> None:
    """Output written to fd 1 or 2 (os.write, C code, a subprocess) reaches the stream through
    ipykernel's pipe and watcher thread: an attack found a quick flush (kernel_side/
    cell_costs.py) returning before the watcher had written it, and the line then came as the
    next cell's background output: 96 of 450 lines here. The flush now waits until the pipe
    is empty and the watcher waits in read (checked in /proc): no line leaves its cell, also
    with two busy processes on the 2 cores (the stock kernel lost 3-6 of 450 then)."""
    kernel.execute("import ctypes, os\nlibc = ctypes.CDLL(None)")
    lost = []
    for i in range(150):
        out = kernel.execute(f"os.write(1, b'out{i}\\n');None")
        err = kernel.execute(f"os.write(2, b'err{i}\\n');None")
        c = kernel.execute(f"libc.printf(b'c{i}\\n'); libc.fflush(None);None")
        got = (out.stdout, err.stderr, c.stdout)
        lost += [(i, line) for line, want in zip(got, (f"out{i}\n", f"err{i}\n", f"c{i}\n"), strict=True)
                 if line != want]  # fmt: skip
    assert not lost, f"{len(lost)} of 450 lines left their cell: {lost[:5]}"


def test_a_cell_is_transformed_once_and_compiled_for_await_only_when_it_may_have_one(
    kernel: KernelSession,
) -> None:
    """kernel_side/cell_costs.py: ipykernel and then run_cell each transformed the cell (the
    IPython syntax) and compiled it to look for a top-level await; now one transform a cell, and
    the compile only for a text with ``await`` or ``async``. Magics, ``!`` and await still run,
    and the kernel's logger builds no debug record it would drop. No cell's file name is
    hashed by ipykernel's murmur2 in Python."""
    kernel.execute(
        "import IPython.core.interactiveshell as __shell_module\n"
        "import ipykernel.compiler as __names\n"
        "__counts = {'transform': 0, 'compile': 0, 'murmur': 0}\n"
        "__murmur = __names.murmur2_x86\n"
        "def __counted_murmur(*args):\n"
        "    __counts['murmur'] += 1\n"
        "    return __murmur(*args)\n"
        "__names.murmur2_x86 = __counted_murmur\n"
        "__manager = get_ipython().input_transformer_manager\n"
        "__transform = __manager.transform_cell\n"
        "__compile = __shell_module._should_be_async\n"
        "def __counted_transform(cell):\n"
        "    __counts['transform'] += 1\n"
        "    return __transform(cell)\n"
        "def __counted_compile(cell):\n"
        "    __counts['compile'] += 1\n"
        "    return __compile(cell)\n"
        "__manager.transform_cell = __counted_transform\n"
        "__shell_module._should_be_async = __counted_compile"
    )
    try:
        plain = kernel.execute("y = 2 + 3\nprint(y)")
        magic = kernel.execute("%env DYNAGRAPH_MAGIC=1\n!echo shell")
        awaited = kernel.execute("import asyncio\nawait asyncio.sleep(0)\nprint('awaited')")
        counts = kernel.execute("print(*__counts.values())")
    finally:
        kernel.execute(
            "del __manager.transform_cell\n"
            "__shell_module._should_be_async = __compile\n"
            "__names.murmur2_x86 = __murmur\n"
            "del __counts, __manager, __transform, __compile, __shell_module, __names, __murmur"
        )
    assert (plain.stdout, awaited.stdout) == ("5\n", "awaited\n")
    assert "shell" in magic.stdout, magic.to_observation()
    # the cells above and the counting cell itself: one transform each (4), only the awaiting
    # cell compiled for the check, no murmur2 (the stock kernel: 7, 7 and 7)
    assert counts.stdout == "4 1 0\n"
    debug = kernel.execute("import logging\nget_ipython().kernel.log.isEnabledFor(logging.DEBUG)")
    assert debug.result == "False"


def test_a_cell_with_top_level_await_answers_and_keeps_the_kernel(kernel: KernelSession) -> None:
    """ipykernel runs as it ships (tools/kernel/kernel_side/launcher.py): without its
    shell-channel thread such a cell ran but never replied, and the kernel was restarted."""
    restarts = kernel.restarts
    kernel.execute("kept = 41")
    result = kernel.execute("import asyncio\nawait asyncio.sleep(0)\nprint(kept + 1)", timeout=20)
    assert (result.status, result.stdout, kernel.restarts) == ("ok", "42\n", restarts)


def test_output_from_subprocesses_threads_and_display_arrives_with_its_cell(
    kernel: KernelSession,
) -> None:
    """Output from subprocesses, threads and display calls arrives with the cell that made it."""
    mixed = kernel.execute(
        "import os, threading\nfrom IPython.display import display\n"
        "os.system('echo from-a-subprocess')\nprint('a')\ndisplay('shown')\n"
        "worker = threading.Thread(target=lambda: print('from-a-thread'))\n"
        "worker.start()\nworker.join()\nos.system('echo to-stderr >&2')\nprint('b', end='')"
    )
    # a subprocess writes to the file descriptor, which ipykernel's watcher thread reads: its
    # line may land anywhere among the cell's own prints (so it does with the stock launcher)
    assert mixed.stdout.count("from-a-subprocess\n") == 1
    assert mixed.stdout.replace("from-a-subprocess\n", "") == "a\nfrom-a-thread\nb"
    assert mixed.stderr == "to-stderr\n"
    assert ("display", "'shown'\n") in mixed.outputs


@pytest.mark.timeout(60)
def test_exception_becomes_a_plain_traceback(kernel: KernelSession) -> None:
    result = kernel.execute("def explode():\n    raise ValueError('bad thing')\nexplode()")
    assert result.status == "error"
    assert result.error_name == "ValueError"
    assert result.error_value == "bad thing"
    assert result.traceback is not None
    assert "in explode" in result.traceback
    assert "raise ValueError('bad thing')" in result.traceback  # the cell's own source line
    assert result.traceback.rstrip().endswith("ValueError: bad thing")
    assert ANSI_ESCAPE not in result.traceback
    assert not result.restarted
    observation = result.to_observation()
    assert "ValueError: bad thing" in observation and ANSI_ESCAPE not in observation


@pytest.mark.timeout(60)
def test_silent_cell_still_reports_its_error(kernel: KernelSession) -> None:
    result = kernel.execute("undefined_name_xyz", silent=True)
    assert result.status == "error"
    assert result.error_name == "NameError"


@pytest.mark.timeout(60)
def test_input_fails_at_once(kernel: KernelSession) -> None:
    result = kernel.execute("input('your name? ')", timeout=30)
    assert result.status == "error"  # with stdin allowed it would wait and end as "timeout"
    assert result.error_name == "StdinNotImplementedError"


@pytest.mark.timeout(60)
def test_huge_print_is_cut_to_head_and_tail(kernel: KernelSession) -> None:
    result = kernel.execute("print('HEAD' + 'x' * 50_000_000 + 'TAIL')")
    assert result.status == "ok"
    assert result.stdout.startswith("HEAD")
    assert result.stdout.endswith("TAIL\n")
    assert len(result.stdout) == kernel.output_limit
    assert result.truncated_chars == 4 + 50_000_000 + 5 - kernel.output_limit
    roomy = result.to_observation(max_chars=30_000)
    assert f"[... {result.truncated_chars} characters cut ...]" in roomy
    short = result.to_observation(max_chars=4000)
    assert len(short) <= 4000
    cut_in_short = int(re.search(r"\[\.\.\. (\d+) characters cut \.\.\.\]", short).group(1))
    assert cut_in_short > result.truncated_chars
    assert "HEAD" in short and "TAIL" in short


@pytest.mark.timeout(60)
def test_timeout_interrupts_and_keeps_the_namespace(kernel: KernelSession) -> None:
    assert kernel.execute("kept_before = 'still here'").ok()
    restarts = kernel.restarts
    result = kernel.execute("import time\nwhile True:\n    time.sleep(0.01)", timeout=1)
    assert result.status == "timeout"
    assert not result.restarted and not result.namespace_lost
    assert kernel.restarts == restarts
    assert "interrupted" in result.to_observation()
    assert kernel.execute("kept_before").result == "'still here'"


@pytest.mark.timeout(60)
def test_kernel_env_is_scrubbed_and_cwd_is_workdir(kernel: KernelSession) -> None:
    assert kernel.workdir.is_dir()
    result = kernel.execute(
        "import os\n"
        "print(os.getcwd())\n"
        "print(sorted(k for k in ('DYNAGRAPH_TEST_SECRET_KEY', 'OPENAI_API_KEY') if k in os.environ))\n"
        "print(os.environ.get('LC_DYNAGRAPH_PROBE'), 'PATH' in os.environ)"
    )
    assert result.stdout.splitlines() == [str(kernel.workdir), "[]", "visible True"]


@pytest.mark.timeout(60)
def test_memory_limit_turns_a_huge_allocation_into_memory_error(kernel: KernelSession) -> None:
    result = kernel.execute("hog = bytearray(3 * 1024**3)")
    assert result.status == "error"
    assert result.error_name == "MemoryError"
    assert kernel.is_alive()
    assert kernel.execute("1 + 1").result == "2"


@pytest.mark.timeout(60)
def test_matplotlib_figure_is_saved_as_png_not_base64(kernel: KernelSession) -> None:
    result = kernel.execute(
        "import matplotlib\n"
        "import matplotlib.pyplot as plt\n"
        "print(matplotlib.get_backend())\n"
        "fig, ax = plt.subplots()\n"
        "ax.plot([1, 3, 2])\n"
        "display(fig)\n"
        "plt.close(fig)"
    )
    assert result.status == "ok", result.to_observation()
    assert result.stdout.strip().lower() == "agg"
    assert len(result.files) == 1
    saved = kernel.workdir / result.files[0]
    assert result.files[0].startswith("outputs/") and result.files[0].endswith(".png")
    assert saved.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    observation = result.to_observation()
    assert result.files[0] in observation
    assert "iVBOR" not in observation  # base64 PNG header


@pytest.mark.timeout(60)
def test_html_display_is_reduced_to_text(kernel: KernelSession) -> None:
    result = kernel.execute(
        "from IPython.display import HTML, display\n"
        "display(HTML('<p><b>bold</b> &amp; <i>italic</i></p><script>alert(1)</script>'))"
    )
    assert result.outputs == [("display", "bold & italic\n")]
    assert "<" not in result.to_observation()


# --------------------------------------------------------------------------- restarts


def _define_marker(session: KernelSession) -> None:
    assert session.execute("marker = 'defined'").ok()


@pytest.mark.timeout(60)
def test_c_loop_that_ignores_interrupt_restarts_the_kernel(restartable: KernelSession) -> None:
    _define_marker(restartable)
    restarts = restartable.restarts
    result = restartable.execute("sum(range(10**11))", timeout=1)
    assert result.status == "timeout"
    assert result.restarted and result.namespace_lost
    assert restartable.restarts == restarts + 1
    observation = result.to_observation()
    assert NAMESPACE_LOST_NOTE in observation and "restarted" in observation.splitlines()[0]
    assert restartable.execute("marker").error_name == "NameError"


@pytest.mark.timeout(60)
def test_code_swallowing_keyboard_interrupt_restarts_the_kernel(restartable: KernelSession) -> None:
    result = restartable.execute(
        "import time\n"
        "while True:\n"
        "    try:\n"
        "        time.sleep(0.01)\n"
        "    except KeyboardInterrupt:\n"
        "        pass",
        timeout=1,
    )
    assert result.status == "timeout"
    assert result.restarted and result.namespace_lost
    assert restartable.execute("'alive'").result == "'alive'"


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "code",
    ["import os\nprint('bye', flush=True)\nos._exit(1)", "import ctypes\nctypes.string_at(0)"],
    ids=["os_exit", "segfault"],
)
def test_dead_kernel_is_noticed_without_a_timeout(restartable: KernelSession, code: str) -> None:
    _define_marker(restartable)
    # timeout=None: only the is_alive() polling can end this call (pytest-timeout guards it)
    result = restartable.execute(code, timeout=None)
    assert result.status == "died"
    assert result.restarted and result.namespace_lost
    assert restartable.is_alive()
    assert NAMESPACE_LOST_NOTE in result.to_observation()
    assert restartable.execute("marker").error_name == "NameError"


@pytest.mark.timeout(60)
def test_kernel_killed_between_cells_is_restarted_before_the_next(
    restartable: KernelSession,
) -> None:
    _define_marker(restartable)
    pid = restartable.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    while restartable.is_alive():  # wait for it to be gone (pytest-timeout bounds this)
        time.sleep(0.05)
    result = restartable.execute("'ran in a new kernel'", timeout=30)
    assert result.status == "ok"
    assert result.result == "'ran in a new kernel'"
    assert result.restarted and result.namespace_lost
    assert "SIGKILL" in result.to_observation()


@pytest.mark.timeout(60)
def test_broken_messaging_is_recovered_by_a_restart(restartable: KernelSession) -> None:
    # jupyter_client packs with orjson when it can and falls back to json.dumps: break both
    result = restartable.execute(
        "import json, sys\n"
        "json.dumps = lambda *args, **kwargs: 'not json {'\n"
        "if 'orjson' in sys.modules:\n"
        "    sys.modules['orjson'].dumps = None\n"
        "print('this message cannot be read')",
        timeout=None,
    )
    assert result.status == "error"
    assert result.error_name == "KernelMessagingError"
    assert result.restarted and result.namespace_lost
    assert "restarted" in result.to_observation()
    assert restartable.execute("print('fine again')").stdout == "fine again\n"


@pytest.mark.timeout(60)
def test_restart_reruns_startup_then_hooks(restartable: KernelSession) -> None:
    seen: list[tuple[int, str | None]] = []

    def redefine_helpers(session: KernelSession) -> None:
        # the startup code (PNG formatter for figures, plain tracebacks) must already have run
        probe = session.execute(
            "formatter = get_ipython().display_formatter.formatters['image/png']\n"
            "(('matplotlib.figure', 'Figure') in formatter.deferred_printers"
            " or any(t.__name__ == 'Figure' for t in formatter.type_printers),"
            " get_ipython().InteractiveTB.mode)"
        )
        seen.append((session.restarts, probe.result))
        session.execute("def helper():\n    return 'helper is back'")

    restartable.on_restart.append(redefine_helpers)
    try:
        restarts = restartable.restarts
        restartable.restart()
        assert seen == [(restarts + 1, "(True, 'Plain')")]
        assert restartable.execute("helper()").result == "'helper is back'"
        # an automatic restart runs the hooks too
        died = restartable.execute("import os\nos._exit(0)", timeout=None)
        assert died.status == "died"
        assert len(seen) == 2
        assert restartable.execute("helper()").result == "'helper is back'"
        plain = restartable.execute("1/0").traceback or ""
        assert plain.startswith("Traceback (most recent call last)") and ANSI_ESCAPE not in plain
    finally:
        restartable.on_restart.remove(redefine_helpers)


# --------------------------------------------------------------------------- registry


@pytest.mark.timeout(120)
def test_a_kernel_that_did_not_start_is_shut_down_before_a_retry(tmp_path: Path) -> None:
    """Its owner's after_shutdown hooks run (the agent's: remove the task folder it made), so a
    retry in the same run starts from nothing and no empty folder is left."""
    made: list[KernelSession] = []

    def make(thread_id: str) -> KernelSession:
        failing = "raise RuntimeError('no start this time')" if not made else ""
        session = KernelSession(tmp_path / thread_id, bootstrap=failing)
        session.after_shutdown.append(lambda: (tmp_path / thread_id).rmdir())
        made.append(session)
        return session

    registry = KernelRegistry(make)
    try:
        with pytest.raises(KernelError, match="no start this time"):
            registry.get("thread-a")
        assert not (tmp_path / "thread-a").exists() and registry.peek("thread-a") is None
        second = registry.get("thread-a")
        assert second is made[1] and second.execute("6 * 7").result == "42"
    finally:
        registry.shutdown_all()
    assert not (tmp_path / "thread-a").exists()


@pytest.mark.timeout(120)
def test_registry_one_kernel_per_thread_and_release_stops_it(tmp_path: Path) -> None:
    registry = KernelRegistry(lambda thread_id: KernelSession(tmp_path / thread_id))
    try:
        first = registry.get("thread-a")
        assert registry.get("thread-a") is first
        assert registry.peek("thread-a") is first
        assert first.execute("import os; os.getcwd()").result == repr(str(tmp_path / "thread-a"))
        other = registry.get("thread-b")
        assert other is not first
        assert other.pid != first.pid
        assert registry.peek("thread-c") is None

        pid = first.pid
        assert pid is not None
        registry.release("thread-a")  # returns at once; the kernel is reaped in the background
        assert registry.peek("thread-a") is None
        with pytest.raises(KernelError):  # refused from the moment it is released
            first.execute("1")
        assert reaper.drain()
        assert not first.is_alive()
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        registry.release("thread-a")  # releasing twice is harmless
        with pytest.raises(KernelError):  # a released kernel is never reused
            first.execute("1")

        other_pid = other.pid
        assert other_pid is not None
        registry.shutdown_all()
        assert len(registry) == 0
        with pytest.raises(ProcessLookupError):
            os.kill(other_pid, 0)
    finally:
        registry.shutdown_all()


@pytest.mark.timeout(60)
def test_kernel_runs_with_the_python_given(tmp_path: Path) -> None:
    wrapper = tmp_path / "wrapped-python"
    wrapper.write_text(f'#!/bin/sh\nexport RAN_THROUGH_WRAPPER=yes\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    with KernelSession(tmp_path / "work", python=str(wrapper)) as session:
        result = session.execute("import os; os.environ.get('RAN_THROUGH_WRAPPER')")
    assert result.result == "'yes'"


@pytest.mark.timeout(60)
def test_a_dropped_session_takes_its_kernel_with_it(tmp_path: Path) -> None:
    session = KernelSession(tmp_path)
    session.start()
    pid = session.pid
    runtime_dir = session._process.runtime_dir if session._process else None
    assert pid is not None and runtime_dir is not None and runtime_dir.is_dir()
    del session
    gc.collect()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not runtime_dir.exists()
