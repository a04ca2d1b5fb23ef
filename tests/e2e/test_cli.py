"""The ``dynagraph`` command in real subprocesses, against the loopback stub model.

The accumulation test is the project's core promise: a function written in one process is
found, defined and called in a later process, and the library counts the use.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import dead_endpoint, dynagraph, user_env
from tests.support.config import coder_cell, planner_answer, planner_step, write_stub_config

pytestmark = pytest.mark.timeout(240)


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["library", "--help"]])
def test_help_answers(args):
    proc = dynagraph(*args)
    assert proc.returncode == 0, proc.stderr
    assert "usage: dynagraph" in proc.stdout


def test_help_and_the_settings_load_no_heavy_package():
    """``dynagraph --help`` and loading the settings import neither langchain, openai, numpy
    nor jupyter_client (issue 14: cold start); they load when a model, library or kernel is
    first built."""
    code = (
        "import sys, contextlib, io\n"
        "from dynagraph.graphs import cli\n"
        "from dynagraph.graphs.settings import load_settings\n"
        "load_settings(None)\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    cli.main(['--help'])\n"
        "heavy = ('langchain_core', 'langgraph', 'openai', 'numpy', 'jupyter_client', 'zmq')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    env = user_env()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_missing_api_key_is_one_line_exit_2(tmp_path):
    env = user_env(DYNAGRAPH_HOME=str(tmp_path))
    env.pop("OPENAI_API_KEY", None)
    proc = dynagraph("run", "x", env=env)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "OPENAI_API_KEY" in lines[0]
    assert list(tmp_path.iterdir()) == []  # said before anything was written


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["run", "x", "--follow-plan", "-1"], "follow_plan"),
        (["run", "x", "--max-steps", "0"], "max_steps"),
        (["batch", "tasks.txt", "--follow-plan", "-2"], "follow_plan"),
        (["batch", "missing.jsonl", "--max-steps", "0"], "max_steps"),  # flags before the file
        (["eval", "math", "--data", "missing", "--follow-plan", "-1"], "follow_plan"),
    ],
)
def test_a_senseless_count_is_one_line_exit_2(cli_env, tmp_path, args, named):
    (tmp_path / "tasks.txt").write_text('{"task": "what is 1 + 1?"}\n', encoding="utf-8")
    proc = dynagraph(*args, env=cli_env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], proc.stderr


def test_unreachable_endpoint_is_one_line_exit_2(cli_env, tmp_path):
    dead = dead_endpoint()
    config = write_stub_config(tmp_path / "dead.yaml", dead, Path(cli_env["DYNAGRAPH_HOME"]))
    proc = dynagraph("run", "x", "--config", str(config), "--quiet", env=cli_env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert dead.removesuffix("/v1") in lines[0] and "cannot reach" in lines[0]


@pytest.mark.parametrize("problem", ["no-key", "dead-endpoint"])
def test_eval_that_records_nothing_writes_no_results_file(cli_env, tmp_path, problem):
    """An eval stopped before its first record (exit 2) neither creates --out (nor its folder,
    nor the summary) nor changes an existing one: a rerun appends to it."""
    env = dict(cli_env)
    if problem == "no-key":
        env.pop("OPENAI_API_KEY")
    else:
        dead = write_stub_config(
            tmp_path / "dead.yaml", dead_endpoint(), Path(env["DYNAGRAPH_HOME"])
        )
        env["DYNAGRAPH_CONFIG"] = str(dead)
    data = tmp_path / "m.jsonl"
    data.write_text(
        '{"id": "a", "problem": "1+1?", "answer": "2"}\n'
        '{"id": "b", "problem": "2+2?", "answer": "4"}\n',
        encoding="utf-8",
    )
    new = tmp_path / "sub" / "ev2.jsonl"
    proc = dynagraph("eval", "math", "--data", str(data), "--out", str(new), "-q", env=env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("dynagraph: "), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not new.exists() and not new.parent.exists()

    old = tmp_path / "ev3.jsonl"  # task a recorded by an earlier run: b is left to do
    record = {"benchmark": "math", "use_library": True, "id": "a", "status": "done"}
    before = json.dumps({**record, "correct": True}) + "\n"
    old.write_text(before, encoding="utf-8")
    proc = dynagraph("eval", "math", "--data", str(data), "--out", str(old), "-q", env=env)
    assert proc.returncode == 2, proc.stderr
    assert old.read_text(encoding="utf-8") == before
    assert not (tmp_path / "ev3.summary.json").exists()


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (
            "models:\n  default:\n    model: [a, b\n",
            "at line 4, column 1: expected ',' or ']', but got '<stream end>'",
        ),
        ("agent:\n  max_steps: 3\n   bad: 1\n", "at line 3, column 7: mapping values are not"),
    ],
    ids=["unclosed-list", "bad-indent"],
)
def test_yaml_syntax_error_names_line_and_column(tmp_path, text, where):
    (tmp_path / "syntax.yaml").write_text(text, encoding="utf-8")
    env = user_env(DYNAGRAPH_HOME=str(tmp_path / "home"))
    proc = dynagraph("run", "x", "--config", "syntax.yaml", env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"dynagraph: config file syntax.yaml is not valid YAML {where}")


WORD_CELL = '''
import re as regex

def count_words(text: str) -> int:
    """Count the words in a text."""
    return len(regex.findall(r"\\w+", text))

print(count_words("the quick brown fox"))
final_answer(count_words("the quick brown fox"))
'''

REUSE_CELL = """
n = count_words("one two three four five six")
print(n)
"""


def test_function_accumulates_across_processes(cli_env, stub_env):
    stub = stub_env["stub"]
    stub.script("planner", [planner_step("Count the words."), planner_answer("4")])
    stub.script("coder", [coder_cell(WORD_CELL)])
    first = dynagraph("run", "How many words in 'the quick brown fox'?", "--json", env=cli_env)
    assert first.returncode == 0, first.stderr
    out1 = json.loads(first.stdout)
    assert out1["answer"] == "4"
    assert out1["functions_created"] == ["count_words"]
    assert {"answer", "steps", "functions_created", "functions_reused", "usage"} <= set(out1)
    assert (out1["library"][-1]["name"], out1["library"][-1]["action"]) == ("count_words", "added")
    progress = first.stderr  # each node's event, printed as it happens
    for line in (
        "[planner  step 1] next: Count the words.",
        "[coder    step 1.1] library hits: none",
        "[executor step 1.1] ok",
        "[planner  step 2] answer: 4",
        "[librarian] count_words: added",
    ):
        assert line in progress, progress

    stub.script("planner", [planner_step("Count the words with the library."), planner_answer("6")])
    stub.script("coder", [coder_cell(REUSE_CELL)])
    second = dynagraph(
        "run", "How many words are in 'one two three four five six'?", "--json", env=cli_env
    )
    assert second.returncode == 0, second.stderr
    out2 = json.loads(second.stdout)
    assert out2["answer"] == "6"
    assert out2["functions_reused"] == ["count_words"]
    assert out2["steps"][0]["status"] == "ok", out2["steps"][0]["observation"]
    assert "6" in out2["steps"][0]["observation"]
    # the coder was shown the function before writing code
    system = stub.requests_for("coder")[-1]["messages"][0]["content"]
    assert "count_words(text: str) -> int: Count the words in a text." in system

    shown = dynagraph("library", "show", "count_words", "--json", env=cli_env)
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert record["uses"] == 1 and record["successes"] == 1
    assert record["imports"] == ["import re as regex"]

    found = dynagraph("library", "search", "number of words in a sentence", "--json", env=cli_env)
    rows = json.loads(found.stdout)
    assert rows[0]["name"] == "count_words" and "score" in rows[0]
    stats = json.loads(dynagraph("library", "stats", "--json", env=cli_env).stdout)
    assert stats["functions"] == 1
    listed = dynagraph("library", "list", env=cli_env)
    assert "count_words" in listed.stdout


def test_run_streams_progress_and_prints_answer(cli_env, stub_env):
    stub = stub_env["stub"]
    stub.script("planner", [planner_step("Print 6*7."), planner_answer("42")])
    stub.script("coder", [coder_cell("print(6 * 7)")])
    proc = dynagraph("run", "six times seven", env=cli_env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "42"
    assert "[planner  step 1] next: Print 6*7." in proc.stderr
    assert "print(6 * 7)" in proc.stderr
    assert "[executor step 1.1] ok" in proc.stderr


def test_run_speculate_uses_the_cell_written_while_the_planner_decided(cli_env, stub_env):
    """``--speculate`` reaches the run: step 2's cell is the one the coder wrote beside the
    planner's turn (the coder gets two requests in all, and progress says so)."""
    stub = stub_env["stub"]
    plan = ["Set a to 6.", "Print a*7."]
    stub.script(
        "planner",
        [planner_step(plan[0], plan=plan), planner_step(plan[1]), planner_answer("42")],
    )
    stub.script("coder", [coder_cell("a = 6"), coder_cell("print(a * 7)")])
    proc = dynagraph("run", "six times seven", "--speculate", env=cli_env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "42"
    assert "[coder    step 2.1] library hits: none (written while the planner decided)" in (
        proc.stderr
    )
    assert "[coder    step 1.1] library hits: none\n" in proc.stderr
    assert len(stub.requests_for("coder")) == 2 and stub.remaining() == 0


def test_weaviate_commands_without_a_server_are_one_line(tmp_path):
    """configs/weaviate.yaml selects the backend; no server runs here, so stats and sync must
    fail with one line naming the URL (no traceback)."""
    import socket

    with socket.socket() as s, socket.socket() as g:  # ports nothing listens on
        s.bind(("127.0.0.1", 0))
        g.bind(("127.0.0.1", 0))
        port, grpc_port = s.getsockname()[1], g.getsockname()[1]
    config = tmp_path / "w.yaml"
    config.write_text(
        "library:\n  backend: weaviate\n  weaviate: {mode: local, host: 127.0.0.1, "
        f"http_port: {port}, grpc_port: {grpc_port}, timeout: 5}}\n"
    )
    env = user_env(DYNAGRAPH_HOME=str(tmp_path))
    for args in (["library", "stats", "--json"], ["library", "sync"]):
        proc = dynagraph(*args, "--config", str(config), env=env, timeout=120)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0], proc.stderr
    sqlite = dynagraph("library", "sync", env=env)
    assert sqlite.returncode == 2 and "weaviate backend" in sqlite.stderr


def test_a_task_that_is_not_utf8_is_one_line_exit_2_and_writes_nothing(cli_env, tmp_path):
    """Bytes of another encoding on the command line (here Latin-1's "é"), or a lone surrogate
    escaped in a batch file: refused before a model call or a file (an attack saw an 80-line
    UnicodeEncodeError from the checkpoint write, after the planner's call)."""
    home = Path(cli_env["DYNAGRAPH_HOME"])
    proc = dynagraph("run", "caf\udce9 task", env=cli_env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "not UTF-8" in lines[0] and "'caf'" in lines[0], proc.stderr
    assert not (home / "checkpoints.db").exists()
    (tmp_path / "tasks.jsonl").write_text('{"id": "a", "task": "caf\\udce9"}\n', encoding="utf-8")
    proc = dynagraph("batch", "tasks.jsonl", env=cli_env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "tasks.jsonl:1" in lines[0] and "not UTF-8" in lines[0]
