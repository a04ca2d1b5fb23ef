"""agent.speculate: the coder writes the plan's next step while the planner decides, and that
cell is used only when the planner keeps to its plan. Real ChatOpenAI against the loopback
stub, a real kernel; only the models' replies are scripted."""

from __future__ import annotations

import re
from typing import Any

import pytest
from dynagraph.graphs.run import run_task
from dynagraph.nodes.context import Context
from dynagraph.nodes.events import render_event

from tests.support.config import (
    CELLS,
    PLAN,
    after_coder_requests,
    coder_cell,
    planner_answer,
    planner_keeping_to,
    planner_step,
)
from tests.support.openai_stub import StubError

pytestmark = pytest.mark.timeout(180)


def coder_messages(stub: Any) -> list[list[dict]]:
    """The coder's requests, each step's duration in the history ("status: ok (0.01 s)")
    masked: a cell's time is the kernel's, not what the comparisons here are about."""
    return [
        [{**m, "content": _DURATION.sub("(N s)", m["content"])} for m in r["messages"]]
        for r in stub.requests_for("coder")
    ]


_DURATION = re.compile(r"\(\d+\.\d+ s\)")


def test_the_coder_writes_ahead_and_its_cell_is_used_when_the_plan_holds(stub_env, settings_for):
    stub = stub_env["stub"]
    # without speculation: the coder's requests, for comparison
    stub.script("planner", planner_keeping_to(PLAN, "6"))
    stub.script("coder", [coder_cell(c) for c in CELLS])
    plain_events: list[dict] = []
    plain = run_task("compute b", settings_for(), on_event=plain_events.append)
    assert plain.status == "done", plain.error
    plain_requests = coder_messages(stub)
    assert not any(e.get("speculative") for e in plain_events if e["node"] == "coder")

    seen: list[bool] = []
    before = len(stub.requests_for("coder"))
    first, second, third, answer = planner_keeping_to(PLAN, "6")
    stub.script(
        "planner",
        [
            first,
            after_coder_requests(stub, before + 2, second, seen),
            after_coder_requests(stub, before + 3, third, seen),
            answer,
        ],
    )
    stub.script("coder", [coder_cell(c) for c in CELLS])
    events: list[dict] = []
    result = run_task(
        "compute b", settings_for(), context=Context(speculate=True), on_event=events.append
    )

    assert result.status == "done", result.error
    assert result.answer == "6"
    assert [s["instruction"] for s in result.steps] == PLAN
    assert [s["status"] for s in result.steps] == ["ok", "ok", "ok"]
    # the coder's calls for steps 2 and 3 were out while the planner decided
    assert seen == [True, True]
    assert [e.get("speculative") for e in events if e["node"] == "coder"] == [False, True, True]
    shown = render_event([e for e in events if e["node"] == "coder"][1])
    assert "(written while the planner decided)" in shown[0]
    # no call was wasted: one coder call a step, as without speculation
    assert result.usage["coder"]["calls"] == 3
    assert result.usage["planner"]["calls"] == 4
    # and the coder was asked exactly what it is asked after a planner turn
    assert coder_messages(stub)[before:] == plain_requests
    assert stub.remaining() == 0


def test_a_change_of_course_drops_the_speculative_cell_and_counts_its_tokens(
    stub_env, settings_for
):
    stub = stub_env["stub"]
    seen: list[bool] = []
    stub.script(
        "planner",
        [
            planner_step(PLAN[0], plan=PLAN),
            after_coder_requests(stub, 2, planner_step("Print a twice.", plan=[]), seen),
            planner_answer("2"),
        ],
    )
    stub.script(
        "coder",
        [
            coder_cell(CELLS[0]),
            coder_cell("print('SPECULATED-B')"),  # for "Set b to a * 3.": never run
            coder_cell("print('OUT-A', a, a)"),
        ],
    )
    events: list[dict] = []
    result = run_task("print a", settings_for(agent={"speculate": True}), on_event=events.append)

    assert result.status == "done", result.error
    assert seen == [True]
    assert [s["instruction"] for s in result.steps] == [PLAN[0], "Print a twice."]
    assert "OUT-A 2 2" in result.steps[1]["observation"]
    assert all("SPECULATED-B" not in s["code"] for s in result.steps)
    assert [e.get("speculative") for e in events if e["node"] == "coder"] == [False, False]
    # the coder was asked again, for the planner's step; the wasted call is paid for
    assert "Print a twice." in coder_messages(stub)[2][-1]["content"]
    assert result.usage["coder"]["calls"] == 3


def test_no_speculation_after_a_failed_step(stub_env, settings_for):
    stub = stub_env["stub"]
    stub.script("planner", [planner_step(PLAN[0], plan=PLAN), planner_answer("gave up")])
    stub.script("coder", [coder_cell("raise ValueError('no data')")])
    result = run_task("compute b", settings_for(agent={"speculate": True, "max_code_retries": 0}))
    assert result.status == "done", result.error
    assert result.steps[0]["status"] == "error"
    assert result.usage["coder"]["calls"] == 1
    assert len(stub.requests_for("coder")) == 1


def test_a_speculative_call_that_fails_leaves_the_step_to_the_coder(stub_env, settings_for):
    """The call made ahead fails (here a 400, which the client does not retry; beside the
    planner's call a busy server may refuse it where it would take it alone): the coder asks
    again itself, as without speculation, and the task goes on."""
    stub = stub_env["stub"]
    stub.script("planner", planner_keeping_to(PLAN[:2], "6"))
    stub.script(
        "coder",
        [coder_cell(CELLS[0]), StubError(400, "busy"), coder_cell(CELLS[1])],
    )
    events: list[dict] = []
    result = run_task("compute b", settings_for(agent={"speculate": True}), on_event=events.append)

    assert result.status == "done", result.error
    assert [s["status"] for s in result.steps] == ["ok", "ok"]
    assert "OUT-TWO 6" in result.steps[1]["observation"]
    assert [e.get("speculative") for e in events if e["node"] == "coder"] == [False, False]
    assert len(stub.requests_for("coder")) == 3  # step 1, the failed call ahead, step 2
    assert stub.remaining() == 0
