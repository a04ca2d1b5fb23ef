"""Run-time context: per-run overrides a caller (or LangGraph Studio) may set.

Fields carry descriptions that Studio shows in its configuration panel. ``None`` means "use the
value from the settings file".
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dynagraph.nodes.settings import AgentSettings
from dynagraph.tools.errors import InputError

#: Per-run counts that override an ``agent`` setting of the same name.
_COUNTS = ("max_steps", "follow_plan")


def _described(text: str) -> dict[str, str]:
    return {"description": text}


@dataclass(kw_only=True)
class Context:
    planner_model: str | None = field(
        default=None,
        metadata=_described("Model name for the planner (overrides models.planner.model)."),
    )
    coder_model: str | None = field(
        default=None,
        metadata=_described("Model name for the coder (overrides models.coder.model)."),
    )
    librarian_model: str | None = field(
        default=None,
        metadata=_described("Model name for the librarian (overrides models.librarian.model)."),
    )
    max_steps: int | None = field(
        default=None,
        metadata=_described("Executed steps before the planner must answer (agent.max_steps)."),
    )
    follow_plan: int | None = field(
        default=None,
        metadata=_described(
            "Planned steps the coder may take in a row without the planner (agent.follow_plan)."
        ),
    )
    speculate: bool | None = field(
        default=None,
        metadata=_described(
            "The coder writes the plan's next step while the planner decides (agent.speculate)."
        ),
    )
    use_library: bool = field(
        default=True,
        metadata=_described(
            "Search the function library and keep new functions (off: no accumulation)."
        ),
    )

    def __post_init__(self) -> None:
        """A count that makes no sense is refused here, in one line, before any work (the
        bounds are the settings' own: ``AgentSettings``)."""
        for name in _COUNTS:
            value = getattr(self, name)
            least = min(m.ge for m in AgentSettings.model_fields[name].metadata if hasattr(m, "ge"))
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise InputError(
                    f"{name} must be a whole number of at least {least}, got {value!r}"
                )

    def step_limit(self, agent: AgentSettings) -> int:
        """Executed steps before the planner must answer: this run's, else ``agent.max_steps``."""
        return agent.max_steps if self.max_steps is None else self.max_steps

    def follow_limit(self, agent: AgentSettings) -> int:
        """Planned steps that may run in a row without a planner turn: this run's, else
        ``agent.follow_plan``."""
        return agent.follow_plan if self.follow_plan is None else self.follow_plan

    def speculation(self, agent: AgentSettings) -> bool:
        """Whether the coder writes ahead while the planner decides: this run's choice, else
        ``agent.speculate``."""
        return agent.speculate if self.speculate is None else self.speculate

    def model_override(self, node: str) -> str | None:
        return getattr(self, f"{node}_model", None)
