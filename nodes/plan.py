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

from dynagraph.nodes.context import Context
from dynagraph.nodes.settings import AgentSettings
from dynagraph.nodes.state import State


def plan_follow_limit(context: Context, agent: AgentSettings) -> int:
    """How many planned steps may run in a row without a planner turn: the run's context,
    else ``agent.follow_plan``."""
    return agent.follow_plan if context.follow_plan is None else context.follow_plan


def remaining_plan(plan: list[str], next_step: str | None) -> list[str]:
    """The plan's steps after ``next_step``. The prompt asks for those only, but models often
    start the plan with the step they ask for now, numbered or not: a first item that is
    ``next_step`` apart from numbering, case and end punctuation is dropped."""
    rest = [item.strip() for item in plan if isinstance(item, str) and item.strip()]
    if rest and next_step is not None and _bare(rest[0]) == _bare(next_step):
        rest = rest[1:]
    return rest


_NUMBERING = re.compile(r"^\s*(?:step\s*)?(?:\d+|[a-z])[.):]\s+|^\s*[-*\u2022]\s+", re.IGNORECASE)


def _bare(step: str) -> str:
    """A step's words without list numbering, case or end punctuation."""
    return _NUMBERING.sub("", step).strip().rstrip(".;:!").strip().casefold()


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
