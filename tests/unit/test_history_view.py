"""The coder's view of the history: earlier steps' code, only the observations the planner has
not read (the latest one, or every step since its last turn when steps were followed)."""

from __future__ import annotations

from dynagraph.nodes.history import render_history

STEPS = [
    {"instruction": "load", "code": "df = load()", "observation": "OLD-OUTPUT", "status": "ok"},
    {"instruction": "bad", "code": "1/0", "observation": "ZeroDivisionError", "status": "error"},
    {"instruction": "sum", "code": "s = df.sum()", "observation": "LATEST-OUTPUT", "status": "ok"},
]


def test_planner_view_keeps_every_observation() -> None:
    text = render_history(STEPS, 2000)
    assert "OLD-OUTPUT" in text and "ZeroDivisionError" in text and "LATEST-OUTPUT" in text


def test_coder_view_keeps_code_and_only_the_latest_observation() -> None:
    text = render_history(STEPS, 2000, unread=1)
    assert "df = load()" in text and "s = df.sum()" in text  # the kernel's variables
    assert "OLD-OUTPUT" not in text and "ZeroDivisionError" not in text
    assert "(error)" in text  # an earlier failed step still says it failed
    assert "LATEST-OUTPUT" in text
    assert len(text) < len(render_history(STEPS, 2000))


def test_coder_view_after_followed_steps_keeps_the_unread_observations() -> None:
    """agent.follow_plan: the planner has not read the steps since its last turn."""
    text = render_history(STEPS, 2000, unread=2)
    assert "OLD-OUTPUT" not in text
    assert "ZeroDivisionError" in text and "LATEST-OUTPUT" in text
    assert render_history(STEPS, 2000, unread=0) == render_history(STEPS, 2000, unread=1)
    assert "OLD-OUTPUT" in render_history(STEPS, 2000, unread=99)
