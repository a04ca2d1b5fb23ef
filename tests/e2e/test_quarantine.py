"""Quarantine that holds, capability policy, refused module-level code and ``library check``
(issue 11 items 3-6), through ``dynagraph library ...`` in-process on a real library file."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.e2e import test_library_cli as library_cli

env, cli, cli_json = library_cli.env, library_cli.cli, library_cli.cli_json  # fixtures, helper

pytestmark = pytest.mark.timeout(240)

READER = '''
import csv


def read_csv_rows(path: str) -> list[dict]:
    """Rows of a CSV file as dictionaries keyed by the header."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))
'''


def decisions(out: str) -> list[dict]:
    return json.loads(out)


def test_a_quarantined_name_stays_quarantined_until_restored(tmp_path, cli) -> None:
    first = tmp_path / "reader.py"
    first.write_text(READER)
    assert [d["action"] for d in cli_json(cli, "library", "add", str(first))] == ["added"]
    assert cli("library", "quarantine", "read_csv_rows", "--reason", "poisoned")[0] == 0

    edited = tmp_path / "reader2.py"  # a one-line edit under the same name
    edited.write_text(READER.replace('newline=""', 'newline="", encoding="utf-8"'))
    status, out, err = cli("library", "add", str(edited))
    assert status == 1
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("read_csv_rows: quarantined [policy] ")
    assert "the name read_csv_rows is quarantined (read_csv_rows v1: poisoned)" in lines[0]
    rows = cli_json(cli, "library", "list", "--all")
    assert [(r["version"], r["status"]) for r in rows] == [(1, "quarantined"), (2, "quarantined")]
    assert cli_json(cli, "library", "search", "read the rows of a csv file") == []

    status, out, _ = cli("library", "add", str(first))  # the quarantined code itself
    assert status == 1 and out.startswith("read_csv_rows: rejected -> read_csv_rows [exact_hash]")

    assert cli("library", "restore", "read_csv_rows")[0] == 0
    rows = cli_json(cli, "library", "list", "--all")
    assert [(r["version"], r["status"]) for r in rows] == [(1, "archived"), (2, "active")]
    third = tmp_path / "reader3.py"
    third.write_text(READER.replace("list(csv.DictReader(fh))", "[*csv.DictReader(fh)]"))
    added = cli_json(cli, "library", "add", str(third))
    assert [(d["action"], d["stage"]) for d in added] == [("new_version", "same_name")]


def test_a_near_duplicate_of_a_quarantined_function_is_quarantined(tmp_path, cli) -> None:
    first = tmp_path / "reader.py"
    first.write_text(READER)
    cli_json(cli, "library", "add", str(first))
    assert cli("library", "quarantine", "read_csv_rows", "--reason", "poisoned")[0] == 0
    renamed = tmp_path / "renamed.py"
    renamed.write_text(  # another name and one more argument: not the same code
        READER.replace(
            "read_csv_rows(path: str)", 'load_csv_rows(path: str, sep: str = ",")'
        ).replace("csv.DictReader(fh)", "csv.DictReader(fh, delimiter=sep)")
    )
    status, out, _ = cli("library", "add", str(renamed), "--json")
    assert status == 1
    (decision,) = decisions(out)
    assert decision["action"] == "quarantined"
    assert "near the quarantined read_csv_rows v1 (cosine" in decision["reason"]


def test_reading_the_environment_is_quarantined_with_the_reason(tmp_path, cli) -> None:
    source = tmp_path / "env.py"
    source.write_text(
        "import os\n\n\ndef home_dir() -> str:\n"
        '    """The home directory of the user."""\n    return os.environ["HOME"]\n'
    )
    status, out, _ = cli("library", "add", str(source), "--json")
    assert status == 1
    (decision,) = decisions(out)
    assert decision["action"] == "quarantined"
    assert decision["reason"].startswith("denied capabilities: environment")
    (row,) = cli_json(cli, "library", "list", "--all")
    assert row["status"] == "quarantined" and row["capabilities"] == ["environment"]
    assert "# capabilities: environment" in cli("library", "show", "home_dir")[1]


def test_capabilities_show_and_a_widened_policy_applies(tmp_path, cli, env) -> None:
    source = tmp_path / "net.py"
    source.write_text(
        "import urllib.request\n\n\ndef fetch_text(url: str) -> str:\n"
        '    """Download a web page as text."""\n'
        "    return urllib.request.urlopen(url).read().decode()\n\n\n"
        "def page_title(url: str) -> str:\n"
        '    """The title of a web page."""\n'
        '    return fetch_text(url).split("<title>")[1].split("</title>")[0]\n'
    )
    added = cli_json(cli, "library", "add", str(source))
    assert [d["action"] for d in added] == ["added", "added"]
    rows = {r["name"]: r for r in cli_json(cli, "library", "list")}
    assert rows["fetch_text"]["capabilities"] == ["network"]
    assert rows["page_title"]["capabilities"] == ["network"]  # through the function it calls
    _, out, _ = cli("library", "search", "title of a web page")
    assert "page_title(url: str) -> str: The title of a web page. [network]" in out

    config = tmp_path / "strict.yaml"
    config.write_text("librarian:\n  deny_capabilities: [network]\n")
    other = tmp_path / "other.py"
    other.write_text(
        "import json\nimport urllib.request\n\n\ndef fetch_json(url: str) -> dict:\n"
        '    """Download and parse a JSON document."""\n'
        "    return json.loads(urllib.request.urlopen(url).read())\n"
    )
    status, out, _ = cli("library", "add", str(other), "--config", str(config), "--json")
    assert status == 1
    assert {d["action"] for d in decisions(out)} == {"quarantined"}


def test_module_level_code_is_refused_at_admission(tmp_path, cli) -> None:
    source = tmp_path / "words.py"
    source.write_text(
        "import re\n\nWORD = re.compile(r'\\w+')\n\n\ndef count_words(text: str) -> int:\n"
        '    """Number of words in a text."""\n    return len(WORD.findall(text))\n'
    )
    status, out, _ = cli("library", "add", str(source))
    assert status == 1 and out.startswith("count_words: rejected [policy] ")
    (entry,) = cli_json(cli, "library", "log", "--name", "count_words")
    assert entry["action"] == "rejected"
    assert (
        "module-level statement \"WORD = re.compile(r'\\\\w+')\" is not a constant"
        in (entry["reason"])
    )
    assert cli_json(cli, "library", "list", "--all") == []


def test_a_record_changed_behind_the_librarys_back_is_refused_and_checked(
    tmp_path, cli, env
) -> None:
    source = tmp_path / "reader.py"
    source.write_text(READER)
    cli_json(cli, "library", "add", str(source))
    with sqlite3.connect(Path(env["DYNAGRAPH_HOME"]) / "library.db") as conn:
        conn.execute(
            "UPDATE functions SET code = replace(code, 'return list', "
            '\'__import__("os").system("id"); return list\')'
        )
    assert cli_json(cli, "library", "search", "rows of a csv file") == []
    status, out, _ = cli("library", "show", "read_csv_rows")  # shown to a person, marked
    assert status == 0 and "[tampered, stored as active]" in out
    assert cli_json(cli, "library", "stats")["tampered"] == 1

    status, out, err = cli("library", "check")
    assert status == 1
    assert out.strip().endswith(": tampered: its code does not hash to its ast_hash")
    assert "1 records fail the integrity check (quarantined)" in err
    (entry,) = cli_json(cli, "library", "log", "--name", "read_csv_rows")[-1:]
    assert (entry["action"], entry["stage"]) == ("quarantined", "check")
    with sqlite3.connect(Path(env["DYNAGRAPH_HOME"]) / "library.db") as conn:
        assert conn.execute("SELECT status FROM functions").fetchall() == [("quarantined",)]
    assert cli("library", "check")[0] == 1  # still reported, already quarantined
