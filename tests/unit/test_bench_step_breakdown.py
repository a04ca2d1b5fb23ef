"""bench/step_breakdown.py's hops: LangGraph's time between nodes, and the kernel time of each
step after the first, read from one task's timed calls."""

from __future__ import annotations

from bench.overhead import Event
from bench.step_breakdown import CELL, EXECUTOR, MODEL_CALL, node_hops, step_floor


def test_hops_are_gaps_between_nodes_from_the_first_executor_call_to_the_last() -> None:
    ms = 0.001
    events = [  # planner, coder, executor (kernel start), then two steps and the answer turn
        Event("planner node", 0, 2 * ms, 0),
        Event("coder node", 3 * ms, 5 * ms, 0),
        Event(EXECUTOR, 6 * ms, 900 * ms, 0),
        Event(CELL, 7 * ms, 899 * ms, 0),
        Event("planner node", 901 * ms, 903 * ms, 0),
        Event("coder node", 905 * ms, 907 * ms, 0),
        Event(EXECUTOR, 910 * ms, 914 * ms, 0),
        Event(CELL, 911 * ms, 913 * ms, 0),
        Event("coder node", 914.5 * ms, 916 * ms, 0),  # a followed plan: no planner turn
        Event(EXECUTOR, 917 * ms, 920 * ms, 0),
        Event(CELL, 917.5 * ms, 918 * ms, 0),
        Event(CELL, 918 * ms, 919.5 * ms, 0),  # two cells in one step add up
        Event("planner node", 930 * ms, 931 * ms, 0),  # after the last executor: left out
    ]
    hops = {k: [round(v, 3) for v in vs] for k, vs in node_hops(events).items()}
    assert hops == {
        "hop executor -> planner": [1.0],
        "hop planner -> coder": [2.0],
        "hop coder -> executor": [3.0, 1.0],
        "hop executor -> coder": [0.5],
        CELL: [2.0, 2.0],
    }


def test_a_task_with_fewer_than_three_executor_calls_has_no_hops() -> None:
    events = [Event("planner node", 0, 1, 0), Event(EXECUTOR, 2, 3, 0)]
    assert node_hops(events) == {}


def test_the_floor_is_the_cell_and_the_steps_model_calls() -> None:
    parts = {CELL: {"median_ms": 2.0}, MODEL_CALL: {"median_ms": 1.5}}
    assert step_floor("off", parts) == 5.0  # a planner call and a coder call a step
    assert step_floor("off-follow-exit", parts) == 3.5  # follow_plan: the coder's only
    assert step_floor("off", {CELL: {"median_ms": 2.0}}) is None  # a part not timed: no floor
