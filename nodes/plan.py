"""Following the planner's plan: the next planned step, taken without asking the planner again.

Why: every planner turn is a model call, and with a real model a call costs seconds. With
``agent.follow_plan: N`` the coder takes up to N of the planner's own next steps in a row, each
from the ``plan`` of the planner's last reply (smolagents' planning interval; the
plan-and-execute pattern), so a step costs one model call instead of two. The planner is asked
again as soon as a step fails (after the coder's retries), a cell calls ``final_answer(...)``,
the plan runs out, N steps were followed, or the step limit is reached: it reads every
observation then. Default 0: the planner decides every step.
"""

from __future__ import annotations

import re
from typing import Any

from dynagraph.nodes.state import State


def remaining_plan(plan: list[str], next_step: str | None) -> list[str]:
    """The plan's steps after ``next_step`` (``plan`` as nodes/protocol.py parsed it). The
    prompt asks for those only, but models often start the plan with the step they ask for
    now: a first item with ``next_step``'s words, list numbering and markup aside, is dropped
    (so is a step the model really meant to run twice in a row: the planner is asked again
    after the plan anyway)."""
    if plan and next_step is not None and same_step(plan[0], next_step):
        return plan[1:]
    return list(plan)


def same_step(one: str, other: str) -> bool:
    """Whether two step instructions say the same, list numbering, case and punctuation aside."""
    return _words(one) == _words(other)


def _words(step: str) -> list[str]:
    """A step's words, case-folded, without the list numbering in front ("1.", "(2)",
    "**Step 3 -**", "- 4)"): punctuation and markup are not words."""
    words = re.findall(r"[^\W_]+", step.casefold())
    while words and (words[0] == "step" or words[0].isdigit()):
        words.pop(0)
    return words


def follow_plan_update(
    state: State,
    *,
    step_ok: bool,
    proposed_answer: str | None,
    steps_done: int,
    max_steps: int,
    follow_limit: int,
) -> dict[str, Any] | None:
    """The state update that hands the plan's next step to the coder, or None when the planner
    must decide (see the module docstring for when). ``steps_done`` counts the step just run."""
    plan = state.get("plan") or []
    followed = state.get("followed", 0)
    if (
        follow_limit <= 0
        or not step_ok
        or proposed_answer is not None
        or not plan
        or followed >= follow_limit
        or steps_done >= max_steps
    ):
        return None
    return {
        "instruction": plan[0],
        "plan": plan[1:],
        "followed": followed + 1,
        "follow": True,
        "attempts": 0,
        "failed_attempts": [],
    }
