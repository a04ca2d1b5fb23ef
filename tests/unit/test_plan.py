"""nodes/plan.py: what remains of a plan, and when a planned step is taken without the planner."""

from __future__ import annotations

import pytest
from dynagraph.nodes.context import Context
from dynagraph.nodes.plan import follow_plan_update, remaining_plan
from dynagraph.nodes.protocol import parse_planner_reply
from dynagraph.nodes.settings import AgentSettings
from dynagraph.tools.errors import InputError


def test_remaining_plan_drops_the_current_step_however_it_is_numbered():
    assert remaining_plan(["a", "b", "c"], "a") == ["b", "c"]
    assert remaining_plan(["b", "c"], "a") == ["b", "c"]  # written without the current step
    assert remaining_plan(["a"], None) == ["a"]
    assert remaining_plan([], "a") == []
    for first in (
        "1. Load the data",
        "1.Load the data",
        "(1) Load the data",
        "**1.** Load the data",
        "Step 1 - Load the data",
        "- 1. load the DATA;",
        "Step 1: Load the data.",
    ):
        assert remaining_plan([first, "b"], "Load the data.") == ["b"], first
    # another step is a step of its own
    assert remaining_plan(["1. Load the data", "b"], "Load the data into df") == [
        "1. Load the data",
        "b",
    ]


def follow(plan, *, followed=0, **overrides):
    state = {"plan": plan, "followed": followed} if plan is not None else {}
    kwargs = {"step_ok": True, "proposed_answer": None, "steps_done": 1, "max_steps": 10}
    return follow_plan_update(state, **{**kwargs, "follow_limit": 3, **overrides})


def test_the_next_planned_step_is_handed_over_with_a_fresh_attempt():
    update = follow(["b", "c"])
    assert update == {
        "instruction": "b",
        "plan": ["c"],
        "followed": 1,
        "follow": True,
        "attempts": 0,
        "failed_attempts": [],
    }


def test_the_planner_decides_when_it_must():
    assert follow(["b"], follow_limit=0) is None  # off
    assert follow(["b"], step_ok=False) is None
    assert follow(["b"], proposed_answer="6") is None
    assert follow([]) is None and follow(None) is None
    assert follow(["b"], steps_done=10) is None  # the step limit: the planner must answer
    assert follow(["b"], followed=3, steps_done=4) is None  # N steps followed: the planner
    assert follow(["b"], followed=2, steps_done=3)["followed"] == 3


def test_the_context_overrides_the_setting():
    agent = AgentSettings(follow_plan=2, max_steps=7)
    assert Context().follow_limit(agent) == 2 and Context().step_limit(agent) == 7
    assert Context(follow_plan=0).follow_limit(agent) == 0
    assert Context(max_steps=3).step_limit(agent) == 3


@pytest.mark.parametrize(
    "fields", [{"follow_plan": -1}, {"follow_plan": "3"}, {"follow_plan": True}, {"max_steps": 0}]
)
def test_a_senseless_count_is_refused_in_one_line(fields):
    with pytest.raises(InputError) as info:
        Context(**fields)
    assert "\n" not in str(info.value) and next(iter(fields)) in str(info.value)


def test_numbers_objects_and_a_numbered_current_step_are_not_followed():
    decision = parse_planner_reply(
        '{"thought": "t", "next_step": "Load the data into df.", '
        '"plan": ["1. Load the data into df", 3, null, {"step": 2}, ["x"], " ", "2. Mean."]}'
    )
    assert decision.plan == ["1. Load the data into df", "2. Mean."]
    assert remaining_plan(decision.plan, decision.next_step) == ["2. Mean."]
