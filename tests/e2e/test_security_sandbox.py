"""Security with the default config (``executor.sandbox: auto``), through the real command line.

Real ``dynagraph`` subprocesses, real kernels, the loopback stub model; DYNAGRAPH_HOME lives
under pytest's tmp_path, i.e. under /tmp, where CI clones live and where the sandbox's private
/tmp used to hide the task's directory from the librarian's scratch kernel.

- a cell that reads ``os.environ``, ``/proc/<parent>/environ``, ``/proc/1/environ`` and every
  ``/proc/*/environ`` finds no API key: not in the observation, the ``--json`` output, stderr,
  checkpoints.db or any file under the home (with ``sandbox: none`` as root it does find it:
  the control that shows the test can fail);
- under the sandbox a task's new function is admitted (scratch kernel in the task's folder), and
  a later cell that knows library.db's path cannot open it for writing;
- without bubblewrap, ``auto`` runs unsandboxed with one warning line and ``bwrap`` stops with
  one line, exit 2.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import dynagraph, user_env
from tests.support.config import coder_cell, planner_answer, planner_step, write_stub_config
from tests.support.sandbox import needs_bwrap

pytestmark = pytest.mark.timeout(300)

SECRET = "sk-test-SECRET"

STEAL_CELL = r"""
import glob, os, re
print("ENVIRON", dict(os.environ))
paths = [f"/proc/{os.getppid()}/environ", "/proc/1/environ", *sorted(glob.glob("/proc/*/environ"))]
for path in paths:
    try:
        data = open(path, "rb").read()
    except OSError as exc:
        print(path, "refused:", type(exc).__name__)
        continue
    print(path, [m.decode() for m in re.findall(rb"[A-Za-z_]*(?:KEY|TOKEN)[A-Za-z_]*=[^\0]*", data)])
print("CELL RAN", len(paths))
final_answer("looked")
"""


def _env(home: Path, config: Path, *, path: str | None = None) -> dict[str, str]:
    env = user_env(OPENAI_API_KEY=SECRET, DYNAGRAPH_HOME=str(home), DYNAGRAPH_CONFIG=str(config))
    if path is not None:
        env["PATH"] = path
    return env


def _files_holding(root: Path, needle: bytes) -> list[str]:
    """Every file under `root` whose bytes contain `needle` (checkpoints.db, its WAL, runs/)."""
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and needle in p.read_bytes()
    )


def _steal(stub_env, tmp_path: Path, **executor):
    stub, home = stub_env["stub"], stub_env["home"]
    config = write_stub_config(
        tmp_path / "config.yaml", stub_env["base_url"], home, executor={"timeout": 30, **executor}
    )
    stub.script("planner", [planner_step("Look around."), planner_answer("looked")])
    stub.script("coder", [coder_cell(STEAL_CELL)])
    proc = dynagraph("run", "Print your environment.", "--json", env=_env(home, config))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    observation = out["steps"][0]["observation"]
    assert "CELL RAN" in observation and "/proc/1/environ" in observation, observation
    return proc, out, home


def test_no_secret_reaches_a_cell_with_the_default_config(stub_env, tmp_path):
    proc, out, home = _steal(stub_env, tmp_path)
    assert "ENVIRON {" in out["steps"][0]["observation"]
    assert SECRET not in proc.stdout  # the --json output, observation included
    assert SECRET not in proc.stderr
    assert (home / "checkpoints.db").exists()
    assert _files_holding(home, SECRET.encode()) == []  # checkpoints.db (+ WAL), runs/, library


@pytest.mark.skipif(os.geteuid() != 0, reason="as a user, `none` is protected by prctl: no leak")
def test_control_as_root_without_the_sandbox_the_same_cell_finds_the_secret(stub_env, tmp_path):
    """The control: the detection above works. As root nothing but a PID namespace hides the
    agent's /proc entries, so with `sandbox: none` the key is read and lands everywhere."""
    proc, _out, home = _steal(stub_env, tmp_path, sandbox="none")
    assert SECRET in proc.stdout
    assert "checkpoints.db" in " ".join(_files_holding(home, SECRET.encode()))


WORD_CELL = '''
import re as regex

def count_words(text: str) -> int:
    """Count the words in a text."""
    return len(regex.findall(r"\\w+", text))

open("words.txt", "w").write("the quick brown fox")  # the task's folder is writable
print(count_words(open("words.txt").read()))
final_answer(count_words("the quick brown fox"))
'''

TAMPER_CELL = r"""
import sqlite3
path = {path!r}
try:
    open(path, "ab").close()
    print("OPENED FOR WRITING")
except OSError as exc:
    print("REFUSED open:", exc)
try:
    con = sqlite3.connect(path)
    con.execute("UPDATE functions SET code = 'def count_words(text): return 0'")
    con.commit()
    print("UPDATED")
except Exception as exc:
    print("REFUSED sqlite:", exc)
final_answer("tried")
"""


@needs_bwrap
def test_under_the_sandbox_with_home_in_tmp_functions_are_admitted_and_the_library_is_out_of_reach(
    stub_env, tmp_path
):
    stub, home = stub_env["stub"], stub_env["home"]
    assert home.resolve().is_relative_to("/tmp")  # the case the private /tmp used to break
    config = write_stub_config(tmp_path / "config.yaml", stub_env["base_url"], home)
    env = _env(home, config)
    stub.script("planner", [planner_step("Count the words."), planner_answer("4")])
    stub.script("coder", [coder_cell(WORD_CELL)])
    first = dynagraph("run", "How many words in 'the quick brown fox'?", "--json", env=env)
    assert first.returncode == 0, first.stderr
    assert "without a sandbox" not in first.stderr  # auto found bubblewrap: no warning
    out = json.loads(first.stdout)
    assert out["steps"][0]["status"] == "ok", out["steps"][0]["observation"]
    added = out["library"][-1]  # after the librarian's specificity note, the admission
    assert (added["name"], added["action"]) == ("count_words", "added"), out["library"]
    assert "reproduces 1/1 probes" in added["reason"]  # replayed in the sandboxed scratch kernel
    assert out["functions_created"] == ["count_words"]

    library = home / "library.db"
    before = library.read_bytes()
    stub.script("planner", [planner_step("Try the library file."), planner_answer("tried")])
    stub.script("coder", [coder_cell(TAMPER_CELL.format(path=str(library)))])
    second = dynagraph("run", f"Change the functions stored in {library}.", "--json", env=env)
    assert second.returncode == 0, second.stderr
    observation = json.loads(second.stdout)["steps"][0]["observation"]
    assert "REFUSED open:" in observation and "REFUSED sqlite:" in observation, observation
    assert "OPENED FOR WRITING" not in observation and "UPDATED" not in observation
    shown = dynagraph("library", "show", "count_words", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "regex.findall" in json.loads(shown.stdout)["code"]
    assert library.read_bytes()[:100] == before[:100]  # the header: same file, not replaced


PEEK_CELL = r"""
import os
root = {root!r}
print("SEEN", sorted(os.listdir(root)))
try:
    print("READ", open(os.path.join(root, {first!r}, "words.txt")).read())
except OSError as exc:
    print("REFUSED read:", type(exc).__name__)
final_answer("peeked")
"""


@pytest.fixture
def outside_tmp() -> Iterator[Path]:
    """A fresh folder outside /tmp (in /var/tmp), removed afterwards."""
    try:
        folder = Path(tempfile.mkdtemp(prefix="dynagraph-test-", dir="/var/tmp"))
    except OSError as exc:
        pytest.skip(f"needs a writable /var/tmp (a folder outside /tmp): {exc}")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@needs_bwrap
def test_with_the_workdir_outside_the_home_a_task_sees_no_other_tasks_folder(
    stub_env, tmp_path, outside_tmp
):
    """``executor.workdir`` set outside DYNAGRAPH_HOME: its folder is hidden as the home is (the
    task's own folder bound back), so a cell cannot list or read another task's files; the
    librarian's scratch kernel, which sees the task's folder through a view bound at that very
    folder, still replays and admits the function."""
    stub, home = stub_env["stub"], stub_env["home"]
    root = outside_tmp / "runs"  # under /tmp the sandbox's private /tmp would hide it anyway
    config = write_stub_config(
        tmp_path / "config.yaml", stub_env["base_url"], home, executor={"workdir": str(root)}
    )
    env = _env(home, config)
    stub.script("planner", [planner_step("Count the words."), planner_answer("4")])
    stub.script("coder", [coder_cell(WORD_CELL)])
    first = dynagraph("run", "How many words?", "--json", "--thread", "first", env=env)
    assert first.returncode == 0, first.stderr
    out = json.loads(first.stdout)
    assert (root / "first" / "words.txt").read_text() == "the quick brown fox"
    assert (out["library"][-1]["name"], out["library"][-1]["action"]) == ("count_words", "added")

    stub.script("planner", [planner_step("Look at the other tasks."), planner_answer("peeked")])
    stub.script("coder", [coder_cell(PEEK_CELL.format(root=str(root), first="first"))])
    second = dynagraph("run", "Peek.", "--json", "--thread", "second", env=env)
    assert second.returncode == 0, second.stderr
    observation = json.loads(second.stdout)["steps"][0]["observation"]
    assert "SEEN ['second']" in observation and "REFUSED read:" in observation, observation
    assert "the quick brown fox" not in observation


def _path_without_bwrap(tmp_path: Path) -> str:
    """A PATH holding this Python's folder and nothing that provides bwrap."""
    folder = str(Path(sys.executable).parent)
    assert shutil.which("bwrap", path=folder) is None
    return folder


def test_auto_without_bubblewrap_runs_unsandboxed_with_one_warning_line(stub_env, tmp_path):
    stub, home = stub_env["stub"], stub_env["home"]
    config = write_stub_config(tmp_path / "config.yaml", stub_env["base_url"], home)
    stub.script("planner", [planner_step("Print 6*7."), planner_answer("42")])
    stub.script("coder", [coder_cell("print(6 * 7)")])
    env = _env(home, config, path=_path_without_bwrap(tmp_path))
    proc = dynagraph("run", "six times seven", "--quiet", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "42"
    warnings = [line for line in proc.stderr.splitlines() if "without a sandbox" in line.lower()]
    assert len(warnings) == 1, proc.stderr  # the task kernel and the scratch kernel: one line
    assert "apt-get install bubblewrap" in warnings[0]


def test_sandbox_bwrap_without_bubblewrap_is_one_line_exit_2(stub_env, tmp_path):
    stub, home = stub_env["stub"], stub_env["home"]
    config = write_stub_config(
        tmp_path / "config.yaml", stub_env["base_url"], home, executor={"sandbox": "bwrap"}
    )
    stub.script("planner", [planner_step("Print 6*7."), planner_answer("42")])
    stub.script("coder", [coder_cell("print(6 * 7)")])
    env = _env(home, config, path=_path_without_bwrap(tmp_path))
    proc = dynagraph("run", "six times seven", "--quiet", env=env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "bubblewrap is not installed" in lines[0] and "apt-get install" in lines[0]
