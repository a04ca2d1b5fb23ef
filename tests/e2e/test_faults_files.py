"""Read-only and broken files, met through the ``dynagraph`` command in subprocesses.

A read-only library.db still serves every read command; a read-only DYNAGRAPH_HOME makes
``run`` fail in one line naming the path; garbage given to ``library import`` / ``library add``
gets one line naming the file and line; rejections and invalid arguments exit non-zero; a
closed stdout pipe ends quietly.

Permissions do not stop root, so when the tests run as root the command runs with the
capabilities that bypass file modes dropped (``setpriv``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import dynagraph
from tests.support.config import with_stub_config, write_stub_config

pytestmark = pytest.mark.timeout(240)

DROP = "-dac_override,-dac_read_search,-fowner"

FUNCS = '''
def celsius_to_fahrenheit(c: float) -> float:
    """Convert degrees Celsius to degrees Fahrenheit."""
    return c * 9 / 5 + 32
'''


@pytest.fixture
def env(cli_env):
    return cli_env


def unprivileged(*args: str, env: dict[str, str], timeout: float = 180):
    """``dynagraph`` as a user file modes apply to (root without its override capabilities)."""
    exe = Path(sys.executable).with_name("dynagraph")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "dynagraph.graphs.cli"]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: file modes cannot be tested")
        cmd = ["setpriv", f"--bounding-set={DROP}", f"--inh-caps={DROP}", "--", *cmd]
    return subprocess.run(
        [*cmd, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


def one_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_read_only_library_serves_every_read_command(env, tmp_path, stub_env):
    funcs = tmp_path / "funcs.py"
    funcs.write_text(FUNCS, encoding="utf-8")
    added = dynagraph("library", "add", str(funcs), env=env)
    assert added.returncode == 0, added.stderr
    db = Path(stub_env["home"]) / "library.db"
    assert db.exists() and not Path(f"{db}-wal").exists()
    db.chmod(0o444)  # the directory stays writable

    stats = unprivileged("library", "stats", "--json", env=env)
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["functions"] == 1
    listed = unprivileged("library", "list", env=env)
    assert listed.returncode == 0 and "celsius_to_fahrenheit" in listed.stdout, listed.stderr
    found = unprivileged("library", "search", "convert temperature", "--json", env=env)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)[0]["name"] == "celsius_to_fahrenheit"
    shown = unprivileged("library", "show", "celsius_to_fahrenheit", env=env)
    assert shown.returncode == 0 and "def celsius_to_fahrenheit" in shown.stdout, shown.stderr
    log = unprivileged("library", "log", env=env)
    assert log.returncode == 0 and "added" in log.stdout, log.stderr

    archived = unprivileged("library", "archive", "celsius_to_fahrenheit", env=env)
    assert archived.returncode != 0
    line = one_line(archived)
    assert str(db) in line and "read-only" in line


def test_read_only_home_makes_run_fail_in_one_line_naming_it(env, tmp_path):
    home = tmp_path / "ro-home"
    home.mkdir()
    home.chmod(0o555)
    config = write_stub_config(tmp_path / "ro.yaml", "http://127.0.0.1:9/v1", home)
    env = {**env, "DYNAGRAPH_HOME": str(home), "DYNAGRAPH_CONFIG": str(config)}
    proc = unprivileged("run", "add 2 and 3", "--quiet", env=env)
    assert proc.returncode == 2, proc.stderr
    line = one_line(proc)
    assert line.startswith("dynagraph: ") and str(home) in line, line


def test_import_of_a_binary_file_names_file_and_line(env, tmp_path):
    blob = tmp_path / "blob.jsonl"
    blob.write_bytes(b'{"not": "a record"}\n' + bytes(range(128, 256)) * 4)
    proc = dynagraph("library", "import", str(blob), env=env)
    assert proc.returncode == 2, proc.stderr
    line = one_line(proc)
    assert f"{blob}:2:" in line and "UTF-8" in line, line


def test_add_of_a_file_with_a_syntax_error_says_so(env, tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("def ok():\n    return 1\n\ndef bad(:\n    pass\n", encoding="utf-8")
    proc = dynagraph("library", "add", str(broken), env=env)
    assert proc.returncode == 2, proc.stderr
    line = one_line(proc)
    assert str(broken) in line and "syntax error at line 4" in line, line
    assert "defines no top-level function" not in line


def test_add_of_a_binary_file_is_one_line(env, tmp_path):
    blob = tmp_path / "blob.py"
    blob.write_bytes(b"def f():\n    return 1\n" + b"\xff\xfe\x00\x01" * 8)
    proc = dynagraph("library", "add", str(blob), env=env)
    assert proc.returncode == 2, proc.stderr
    assert f"{blob}:3:" in one_line(proc)


def test_add_of_a_file_saved_with_a_byte_order_mark(env, tmp_path):
    """Editors on Windows save UTF-8 with a BOM; Python runs such a file, so add takes it."""
    marked = tmp_path / "marked.py"
    marked.write_bytes(b"\xef\xbb\xbf" + FUNCS.encode())
    proc = dynagraph("library", "add", str(marked), env=env)
    assert proc.returncode == 0, proc.stderr
    assert "celsius_to_fahrenheit" in proc.stdout + proc.stderr


def test_a_rejected_function_exits_non_zero(env, tmp_path):
    funcs = tmp_path / "undefinable.py"
    funcs.write_text(
        "def scale(x: float, factor: float = UNDEFINED_FACTOR) -> float:\n"
        '    """Scale a number."""\n'
        "    return x * factor\n",
        encoding="utf-8",
    )
    proc = dynagraph("library", "add", str(funcs), env=env)
    assert "scale: rejected" in proc.stdout, proc.stdout + proc.stderr
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("k", ["-1", "0", "x"])
def test_search_with_an_invalid_k_is_an_error(env, k):
    proc = dynagraph("library", "search", "anything", "-k", k, env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "-k" in proc.stderr and "Traceback" not in proc.stderr


def test_closed_stdout_pipe_ends_quietly(env, tmp_path):
    funcs = tmp_path / "funcs.py"
    funcs.write_text(FUNCS, encoding="utf-8")
    assert dynagraph("library", "add", str(funcs), env=env).returncode == 0
    exe = Path(sys.executable).with_name("dynagraph")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "dynagraph.graphs.cli"]
    for args in (["library", "show", "celsius_to_fahrenheit"], ["library", "list", "--json"]):
        proc = subprocess.Popen(
            [*cmd, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        proc.stdout.close()  # the reader is gone before the first line is written
        _, err = proc.communicate(timeout=120)
        text = err.decode()
        assert "BrokenPipeError" not in text and "Traceback" not in text, text
        assert proc.returncode == 141, text


def test_unwritable_places_are_one_line_exit_2_before_any_model_call(env, tmp_path, stub_env):
    """The tasks' folder (executor.workdir), the demo's --home and the library's path, each
    where nothing can be written: one line naming the setting, exit 2, and for a run no model
    call yet (an attack saw tracebacks for the first two, the workdir's after two model calls,
    and exit 1 for the library)."""
    from dynagraph.tools.errors import EnvironmentProblem
    from dynagraph.tools.library.sqlite import SqliteLibrary

    stub = stub_env["stub"]
    cli = with_stub_config(env, stub_env, tmp_path / "wd.yaml", executor={"workdir": "/proc/x"})
    proc = dynagraph("run", "add 2 and 3", "--quiet", env=cli)
    assert proc.returncode == 2, proc.stderr
    line = one_line(proc)
    assert "/proc/x" in line and "executor.workdir" in line, line
    assert stub.requests == []

    (tmp_path / "a-file").write_text("", encoding="utf-8")
    for home in (tmp_path / "a-file", Path("/proc/demo-home")):
        proc = dynagraph("demo", "--home", str(home), env=env)
        assert proc.returncode == 2, proc.stderr
        line = one_line(proc)
        assert str(home) in line and "--home" in line, line

    class NoEmbedder:  # opening the file comes first; nothing is embedded
        name, dim = "none", 4

    with pytest.raises(EnvironmentProblem, match="library.path") as raised:
        SqliteLibrary(Path("/proc/library.db"), embedder=NoEmbedder())  # type: ignore[arg-type]
    assert raised.value.exit_code == 2


def test_import_of_a_file_without_line_ends_stops_at_the_record_size(tmp_path, monkeypatch):
    """A file with no line ends (an attack used /dev/zero) is not read whole: the first line
    longer than a record can be is refused, naming file and line (it took 2.3 GB in 1.5 s)."""
    from dynagraph.tools.errors import InputError
    from dynagraph.tools.library import jsonl

    monkeypatch.setattr(jsonl, "MAX_RECORD_CHARS", 1000)
    endless = tmp_path / "endless.jsonl"
    endless.write_text("\x00" * 5000, encoding="utf-8")
    with pytest.raises(InputError, match=r"endless.jsonl:1: longer than 1,000 characters"):
        list(jsonl.iter_jsonl(endless))
    fine = tmp_path / "fine.jsonl"
    fine.write_text("\n\n", encoding="utf-8")
    assert list(jsonl.iter_jsonl(fine)) == []
