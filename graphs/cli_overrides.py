"""The per-run override flags that ``run``, ``batch`` and ``eval`` share, and the run
``Context`` they make; the help of every command's ``--config``.

Why one place: the three commands run tasks the same way, so a user expects the same flags on
each; written once, a new override (``--speculate``) reaches all three and its help says the
same everywhere.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from dynagraph.graphs.settings import shipped_configs

if TYPE_CHECKING:  # the Context's module is imported when a command runs, not for --help
    from dynagraph.nodes.context import Context

#: the help of every command's --config (the names: the configs shipped with this install)
CONFIG_HELP = f"a YAML config file, or a shipped config by name: {', '.join(shipped_configs())}"


def add_override_args(parser: argparse.ArgumentParser, *, no_library_help: str) -> None:
    """Add ``--max-steps``, ``--follow-plan``, ``--speculate``/``--no-speculate``, the two
    model overrides and ``--no-library`` (a command's own words for what it means to it)."""
    parser.add_argument("--max-steps", type=int, help="override agent.max_steps")
    parser.add_argument(
        "--follow-plan",
        type=int,
        metavar="N",
        help="take up to N planned steps in a row without the planner (agent.follow_plan)",
    )
    parser.add_argument(
        "--speculate",
        action=argparse.BooleanOptionalAction,
        help="the coder writes the plan's next step while the planner decides (agent.speculate)",
    )
    parser.add_argument("--planner-model", help="override the planner's model name")
    parser.add_argument("--coder-model", help="override the coder's model name")
    parser.add_argument("--no-library", action="store_true", help=no_library_help)


def context_from_args(args: argparse.Namespace) -> Context:
    """The run context the override flags ask for (unset flags leave the config's values); a
    bad value raises the Context's one-line :class:`~dynagraph.tools.errors.InputError`."""
    from dynagraph.nodes.context import Context

    return Context(
        planner_model=args.planner_model,
        coder_model=args.coder_model,
        max_steps=args.max_steps,
        follow_plan=args.follow_plan,
        speculate=args.speculate,
        use_library=not args.no_library,
    )


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1 (``-k -1`` or ``--limit 0`` is an error,
    not an empty answer or a run of nothing)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
