"""nodes/plan.py: what remains of a plan, and when a planned step is taken without the planner."""

from __future__ import annotations

import pytest
from dynagraph.nodes.context import Context
from dynagraph.nodes.plan import follow_plan_update, plan_follow_limit, remaining_plan
from dynagraph.nodes.protocol import parse_planner_reply
from dynagraph.nodes.settings import AgentSettings
from dynagraph.tools.errors import InputError


def test_remaining_plan_drops_the_current_step_and_blanks():
    assert remaining_plan(["a", "b", "c"], "a") == ["b", "c"]
    assert remaining_plan([" a ", "", "b"], "a") == ["b"]
    assert remaining_plan(["b", "c"], "a") == ["b", "c"]  # written without the current step
    assert remaining_plan(["a"], None) == ["a"]
    assert remaining_plan([], "a") == []


def follow(plan, **overrides):
    kwargs = {"step_ok": True, "proposed_answer": None, "steps_done": 1, "max_steps": 10}
    kwargs.update(follow_limit=overrides.pop("follow_limit", 3), **overrides)
    state = {"plan": plan, "followed": overrides.pop("followed", 0)} if plan is not None else {}
    return follow_plan_update(state, **kwargs)


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
    state = {"plan": ["b"], "followed": 3}
    assert (
        follow_plan_update(
            state, step_ok=True, proposed_answer=None, steps_done=4, max_steps=10, follow_limit=3
        )
        is None
    )


def test_the_context_overrides_the_setting():
    agent = AgentSettings(follow_plan=2)
    assert plan_follow_limit(Context(), agent) == 2
    assert plan_follow_limit(Context(follow_plan=0), agent) == 0


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
    assert remaining_plan(["Step 1: load the DATA into df", "b"], "Load the data into df.") == ["b"]
    assert remaining_plan(["- load the data into df;", "b"], "Load the data into df.") == ["b"]
    # a different first step is a step of its own
    assert remaining_plan(["1. Load the data.", "b"], "Load the data into df.") == [
        "1. Load the data.",
        "b",
    ]
