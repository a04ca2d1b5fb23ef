"""The per-run override flags are the same on ``run``, ``batch`` and ``eval`` and reach the run's
Context (graphs/cli_overrides.py)."""

from __future__ import annotations

import pytest
from dynagraph.graphs.cli import build_parser
from dynagraph.graphs.cli_overrides import context_from_args
from dynagraph.tools.errors import InputError

COMMANDS = {
    "run": ["run", "a task"],
    "batch": ["batch", "tasks.jsonl"],
    "eval": ["eval", "math", "--data", "d"],
}
OVERRIDES = [
    "--max-steps", "4", "--follow-plan", "2", "--speculate",
    "--planner-model", "p-model", "--coder-model", "c-model", "--no-library",
]  # fmt: skip


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_override_reaches_the_context(command: str) -> None:
    context = context_from_args(build_parser().parse_args([*COMMANDS[command], *OVERRIDES]))
    assert (context.max_steps, context.follow_plan, context.speculate) == (4, 2, True)
    assert (context.planner_model, context.coder_model) == ("p-model", "c-model")
    assert context.use_library is False


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_unset_overrides_leave_the_config_in_charge(command: str) -> None:
    context = context_from_args(build_parser().parse_args(COMMANDS[command]))
    assert (context.max_steps, context.follow_plan, context.speculate) == (None, None, None)
    assert (context.planner_model, context.coder_model) == (None, None)
    assert context.use_library is True
    off = context_from_args(build_parser().parse_args([*COMMANDS[command], "--no-speculate"]))
    assert off.speculate is False


def test_a_senseless_count_is_refused_by_the_context() -> None:
    args = build_parser().parse_args([*COMMANDS["eval"], "--follow-plan", "-1"])
    with pytest.raises(InputError, match="follow_plan"):
        context_from_args(args)
