"""The read-ahead window of nodes/readahead.py: how many planned steps the coder embeds ahead."""

from __future__ import annotations

from dynagraph.nodes.readahead import MAX_STEPS_AHEAD, Readahead

PLAN = [f"step {i}" for i in range(20)]


def test_the_first_plan_is_read_ahead_in_full_then_the_window_follows_the_planner() -> None:
    ahead = Readahead()
    assert ahead.steps("t", "step 0", PLAN[1:]) == PLAN[1 : 1 + MAX_STEPS_AHEAD]  # first plan
    assert ahead.steps("t", "step 1", PLAN[2:]) == PLAN[2 : 2 + MAX_STEPS_AHEAD]  # it held
    assert ahead.steps("t", "something else", PLAN[3:]) == ["step 3"]  # changed course
    assert ahead.steps("t", "step 3", PLAN[4:]) == ["step 4", "step 5"]  # held: doubles
    assert ahead.steps("t", "step 4", PLAN[5:]) == PLAN[5:9]
    assert len(ahead.steps("t", "step 5", PLAN[6:])) == MAX_STEPS_AHEAD
    assert len(ahead.steps("t", "step 6", PLAN[7:])) == MAX_STEPS_AHEAD  # capped
    assert ahead.steps("t", "again elsewhere", PLAN[8:]) == ["step 8"]
    assert ahead.steps("t", "step 8", PLAN[9:11]) == ["step 9", "step 10"]  # a short plan


def test_tasks_have_their_own_windows_and_only_the_last_ones_are_kept() -> None:
    ahead = Readahead(keep=2)
    ahead.steps("a", "", PLAN)
    ahead.steps("b", "", PLAN)
    assert ahead.steps("a", "elsewhere", PLAN[1:]) == ["step 1"]  # a's own window
    ahead.steps("c", "", PLAN)  # b, the least recent, is forgotten: a first plan again
    assert len(ahead.steps("b", "elsewhere", PLAN[1:])) == MAX_STEPS_AHEAD
