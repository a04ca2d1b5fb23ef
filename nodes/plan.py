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

from typing import Any

from dynagraph.nodes.context import Context
from dynagraph.nodes.settings import AgentSettings
from dynagraph.nodes.state import State


def plan_follow_limit(context: Context, agent: AgentSettings) -> int:
    """How many planned steps may run in a row without a planner turn: the run's context,
    else ``agent.follow_plan``."""
    if context.follow_plan is not None:
        return max(context.follow_plan, 0)
    return agent.follow_plan


def remaining_plan(plan: list[str], next_step: str | None) -> list[str]:
    """The plan's steps after ``next_step``. Models write the plan with or without the step
    they are asking for now; a plan that starts with it drops it."""
    rest = [item.strip() for item in plan if isinstance(item, str) and item.strip()]
    if rest and next_step is not None and rest[0] == next_step.strip():
        rest = rest[1:]
    return rest


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
