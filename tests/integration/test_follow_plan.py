"""agent.follow_plan: the coder takes the planner's planned steps without a planner turn, and
the planner is asked again when it must be. Real ChatOpenAI against the loopback stub, a real
kernel; only the models' replies are scripted."""

from __future__ import annotations

import json

import pytest
from dynagraph.graphs.run import run_task
from dynagraph.nodes.context import Context
from dynagraph.nodes.events import render_event

from tests.support.config import (
    CELLS,
    PLAN,
    coder_cell,
    planner_answer,
    planner_keeping_to,
    planner_step,
)

pytestmark = pytest.mark.timeout(180)


def script_plan(stub, *more_planner_replies: str, cells: list[str] = CELLS) -> None:
    stub.script("planner", [planner_step(PLAN[0], plan=PLAN), *more_planner_replies])
    stub.script("coder", [coder_cell(c) for c in cells])


def test_planned_steps_run_without_a_planner_turn(stub_env, settings_for):
    stub = stub_env["stub"]
    script_plan(stub, planner_answer("6"))
    events: list[dict] = []
    result = run_task("compute b", settings_for(agent={"follow_plan": 5}), on_event=events.append)

    assert result.status == "done", result.error
    assert result.answer == "6"
    assert [s["instruction"] for s in result.steps] == PLAN
    assert [s["status"] for s in result.steps] == ["ok", "ok", "ok"]
    assert result.usage["planner"]["calls"] == 2  # the first plan, then the answer
    assert result.usage["coder"]["calls"] == 3
    # the planner's second turn reads every observation, including the followed steps'
    last = json.dumps(stub.requests_for("planner")[-1]["messages"])
    assert "OUT-ONE" in last and "OUT-TWO" in last and "Print b." in last
    # the planner was told its plan may run without it
    first = json.dumps(stub.requests_for("planner")[0]["messages"])
    assert "Up to 5 steps of your plan may run" in first
    # the step records say which steps came from the plan
    assert [s.get("from_plan") for s in result.steps] == [False, True, True]
    # the coder of step 3 sees step 1's output too: the planner never read it
    third = stub.requests_for("coder")[2]["messages"][-1]["content"]
    assert "OUT-ONE" in third and "OUT-TWO" in third
    # progress shows where a followed step came from
    followed = [e for e in events if e["node"] == "executor" and e.get("next_step")]
    assert [e["next_step"] for e in followed] == PLAN[1:]
    assert "[plan     step 2] next: Set b to a * 3." in render_event(followed[0])


def test_default_asks_the_planner_every_step(stub_env, settings_for):
    stub = stub_env["stub"]
    stub.script("planner", planner_keeping_to(PLAN[:2], "6"))
    stub.script("coder", [coder_cell(c) for c in CELLS[:2]])
    result = run_task("compute b", settings_for())
    assert result.status == "done", result.error
    assert result.usage["planner"]["calls"] == 3
    assert len(result.steps) == 2
    first = json.dumps(stub.requests_for("planner")[0]["messages"])
    assert "may run one after another" not in first


def test_a_failed_step_goes_back_to_the_planner(stub_env, settings_for):
    stub = stub_env["stub"]
    script_plan(stub, planner_answer("gave up"), cells=["raise ValueError('no data')"])
    result = run_task("compute b", settings_for(agent={"follow_plan": 5, "max_code_retries": 0}))
    assert result.status == "done", result.error
    assert len(result.steps) == 1 and result.steps[0]["status"] == "error"
    assert result.usage["planner"]["calls"] == 2
    assert stub.remaining("coder") == 0


def test_final_answer_in_a_cell_goes_back_to_the_planner(stub_env, settings_for):
    stub = stub_env["stub"]
    script_plan(stub, planner_answer("2"), cells=["a = 2\nfinal_answer(a)"])
    result = run_task("compute a", settings_for(agent={"follow_plan": 5}))
    assert result.status == "done", result.error
    assert result.answer == "2"
    assert len(result.steps) == 1
    assert (
        "The last cell called final_answer('2')"
        in stub.requests_for("planner")[-1]["messages"][-1]["content"]
    )


def test_follow_limit_and_step_limit_bring_the_planner_back(stub_env, settings_for):
    stub = stub_env["stub"]
    # follow at most 1 planned step in a row: plan, followed step, planner, ...
    script_plan(stub, planner_step(PLAN[2], plan=[PLAN[2]]), planner_answer("6"))
    result = run_task("compute b", settings_for(agent={"follow_plan": 1}))
    assert result.status == "done", result.error
    assert [s["instruction"] for s in result.steps] == PLAN
    assert result.usage["planner"]["calls"] == 3

    # the step limit: after 2 steps the planner must answer, even with plan steps left
    stub.script("planner", [planner_step(PLAN[0], plan=PLAN), planner_answer("6")])
    stub.script("coder", [coder_cell(c) for c in CELLS[:2]])
    result = run_task("compute b", settings_for(agent={"follow_plan": 5, "max_steps": 2}))
    assert result.status == "done", result.error
    assert len(result.steps) == 2
    assert "give the final answer now" in json.dumps(stub.requests_for("planner")[-1]["messages"])


def test_the_run_context_overrides_the_setting(stub_env, settings_for):
    stub = stub_env["stub"]
    script_plan(stub, planner_answer("6"))
    result = run_task("compute b", settings_for(), context=Context(follow_plan=3))
    assert result.status == "done", result.error
    assert result.usage["planner"]["calls"] == 2 and len(result.steps) == 3
