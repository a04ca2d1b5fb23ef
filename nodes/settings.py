"""The agent section of the settings: how many steps, retries and re-asks a task may take."""

from __future__ import annotations

from dynagraph.tools.config import StrictSettings
from pydantic import Field


class AgentSettings(StrictSettings):
    max_steps: int = Field(10, ge=1, description="executed steps before the planner must answer")
    max_code_retries: int = Field(3, ge=0, description="coder retries of a failed cell per step")
    max_parse_retries: int = Field(2, ge=0, description="re-asks after a malformed model reply")
    follow_plan: int = Field(
        0,
        ge=0,
        description="steps of the planner's own plan the coder may take in a row without asking "
        "the planner again (one model call a step instead of two); 0: the planner decides every "
        "step",
    )
    speculate: bool = Field(
        False,
        description="while the planner decides, the coder writes the plan's next step in the "
        "background; used when the planner keeps to its plan (a step then waits for one model "
        "call, not two), dropped with its tokens counted when it does not",
    )
    show_images: bool = Field(
        False, description="the planner sees the images the last step displayed (vision models)"
    )
