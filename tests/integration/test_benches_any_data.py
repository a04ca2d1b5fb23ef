"""The benches on a CRAFT-format toolset that is not TabMWP (issue 15, item 3): no ``table``
column, sympy code, tools without imports. tests/fixtures/craft-math has five rows; each bench
runs with its smallest options and writes where ``--out`` says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import librarian, library, replay_craft
from bench.craft import probe_header, read_csv

pytestmark = pytest.mark.timeout(600)

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "craft-math"


def test_the_header_is_inferred_from_the_datas_own_imports():
    rows = read_csv(DATA / "epoch_0" / "4_valid_tools.csv")
    assert "table" not in rows[0]
    header = probe_header(DATA, [r["code"] for r in rows])
    assert "from sympy import symbols, Eq, solve" in header and "import math" in header
    assert "pandas" not in header  # not TabMWP's fixed header


def test_replay_craft_runs_without_tables(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("DYNAGRAPH_CONFIG", raising=False)
    monkeypatch.setenv("DYNAGRAPH_HOME", str(tmp_path / "home"))
    out = tmp_path / "replay.json"
    assert replay_craft.main(["--data", str(DATA), "--out", str(out), "--quiet"]) == 0
    figures = json.loads(out.read_text())["figures"]
    assert figures["questions"] == 5
    assert [t["match"] for t in figures["tasks"]] == [True] * 5  # "x + 1", "6.0" vs "6", ...
    assert (tmp_path / "replay.png").is_file()


def test_librarian_bench_runs_without_tables(tmp_path: Path):
    out = tmp_path / "librarian.json"
    argv = ["--data", str(DATA), "--only", "specificity", "ingest", "--measure-k", "2"]
    assert librarian.main([*argv, "--out", str(out)]) == 0
    figures = json.loads(out.read_text())["figures"]
    assert figures["rows"] == 5 and "sympy" in figures["probe_header"]
    assert figures["probes"]["tools_with_probes"] == 5  # every tool ran under the header
    ingest = figures["ingest"]
    assert ingest["craft_toolset"] == 4  # counted from the data, not TabMWP's 180
    assert not any(k.startswith("verify:rejected") for k in ingest["by_stage"]), ingest
    assert figures["specificity"]["codeparse.is_specific"]["rows"] == 5


def test_library_bench_runs_without_tables(tmp_path: Path):
    out = tmp_path / "library.json"
    argv = ["--data", str(DATA), "--quick", "--sizes", "8", "--searches", "2"]
    assert library.main([*argv, "--out", str(out)]) == 0
    recall = json.loads(out.read_text())["figures"]["recall"]
    assert (recall["tools"], recall["queries"]) == (4, 1)
    # the baseline is computed in the run, on the same queries
    assert set(recall["baseline_recall_at_5"]) == {"docstring view", "docstring + origin question"}
    assert (
        recall["baseline_recall_at_5"]["docstring view"]
        == recall["modes"]["docstring view alone"]["r@5"]
    )
