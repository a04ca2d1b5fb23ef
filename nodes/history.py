"""How earlier steps are shown to the models: instruction, code and observation, each bounded.

Older steps are clipped harder than the latest one, so a prompt grows by at most a few KB per
step however large the cells and their outputs were. A step whose kernel was restarted says so:
the variables of earlier steps are gone.
"""

from __future__ import annotations

from typing import Any


def clip(text: str, limit: int) -> str:
    """Head and tail of ``text`` with a marker saying how much was cut."""
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    tail = limit - head
    cut = len(text) - head - tail
    return f"{text[:head]}\n[... {cut} characters cut ...]\n{text[-tail:]}"


#: What the models are told about a step during which the kernel was restarted.
RESTART_NOTE = "the kernel was restarted: variables from earlier steps are gone"

#: An instruction is the planner's own sentence; a runaway one is clipped to this.
INSTRUCTION_CHARS = 1000


def render_history(
    steps: list[dict[str, Any]],
    observation_chars: int,
    *,
    unread: int | None = None,
) -> str:
    """Every executed step; older code and observations are clipped harder than the latest.

    ``unread`` (the coder's view): only the observations of the last ``unread`` steps (at
    least the latest) are shown; earlier steps keep their code (the variables the kernel
    holds) but not their observations, which the planner has read already and folded into its
    instruction. None: every observation (the planner's view)."""
    first_shown = 1 if unread is None else len(steps) - max(unread, 1) + 1
    if not steps:
        return "(none yet)"
    parts = []
    for i, step in enumerate(steps, 1):
        latest = i == len(steps)
        limit = observation_chars if latest else max(400, observation_chars // 4)
        lines = [f"Step {i}: {clip(step.get('instruction', ''), INSTRUCTION_CHARS)}"]
        if step.get("code"):
            lines.append("```python\n" + clip(step["code"].rstrip(), limit) + "\n```")
        if step.get("restarted"):
            lines.append(f"Note: during this step {RESTART_NOTE}.")
        if i >= first_shown:
            observation = clip(step.get("observation", ""), limit)
            lines.append(f"Observation ({step.get('status', '?')}):\n" + observation)
        elif step.get("status") != "ok":
            lines.append(f"({step.get('status', '?')})")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)
