"""``admit``: the one entry to the librarian's cascade, for the agent's librarian node and for
``dynagraph library add`` alike.

Each candidate goes through the stages, cheapest first; the first stage that decides ends it:
``exact_hash`` -> ``policy`` -> ``verify`` -> ``generalize`` (a replacement restarts the cascade) ->
``same_name`` -> ``near`` -> ``model`` -> ``add``. Stages needing a scratch kernel or a model
step aside when the context has none. A stage that raises rejects that one candidate (with the
error as the reason), never the task's other functions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext

from dynagraph.tools.librarian.add import AddStage
from dynagraph.tools.librarian.candidate import Candidate
from dynagraph.tools.librarian.context import AdmissionContext, Decision, Restart, Stage
from dynagraph.tools.librarian.exact import ExactDuplicateStage
from dynagraph.tools.librarian.generalize import GeneralizeStage
from dynagraph.tools.librarian.near import NearNeighbourStage
from dynagraph.tools.librarian.policy import PolicyStage
from dynagraph.tools.librarian.same_name import SameNameStage
from dynagraph.tools.librarian.verdict import ModelVerdictStage
from dynagraph.tools.librarian.verify import VerifyStage

__all__ = ["MAX_RESTARTS", "admit", "default_stages"]

#: A candidate may be replaced (generalized) this many times before the cascade just goes on.
MAX_RESTARTS = 2


def default_stages() -> list[Stage]:
    """The whole cascade, cheapest first."""
    return [
        ExactDuplicateStage(),
        PolicyStage(),  # before anything runs it: definition, capabilities, quarantine
        VerifyStage(),
        GeneralizeStage(),
        SameNameStage(),
        NearNeighbourStage(),
        ModelVerdictStage(),
        AddStage(),
    ]


def admit(
    candidates: Sequence[Candidate],
    ctx: AdmissionContext,
    stages: Sequence[Stage] | None = None,
    *,
    journal: Callable[[list[Decision]], None] | None = None,
) -> list[Decision]:
    """Judge every candidate in order; for each, the decisions made on the way (generalized,
    kept specific) and then the final one. The candidates are ``ctx.batch`` while they are
    judged, so that one may depend on another.

    ``journal`` writes a candidate's decisions to the library's log; a library with
    ``atomic()`` (SQLite) commits the candidate's writes and its log entries together, so a
    crash leaves a function either stored and logged, or neither."""
    chosen = list(stages) if stages is not None else default_stages()
    ctx.batch = {c.name: c for c in candidates}
    atomic = getattr(ctx.library, "atomic", None) or nullcontext
    decisions: list[Decision] = []
    for cand in candidates:
        with atomic():
            found = _admit_one(cand, ctx, chosen)
            if journal is not None:
                journal(found)
        decisions += found
    return decisions


def _admit_one(candidate: Candidate, ctx: AdmissionContext, stages: list[Stage]) -> list[Decision]:
    out: list[Decision] = []
    restarts, index = 0, 0
    while index < len(stages):
        stage = stages[index]
        try:
            result = stage.decide(candidate, ctx)
        except Exception as exc:  # a stage failing must not lose the task's other functions
            reason = f"{type(exc).__name__}: {exc}"
            result = Decision(candidate.name, "rejected", None, reason, stage.name)
        out += ctx.notes
        ctx.notes = []
        if isinstance(result, Decision):
            return [*out, result]
        if isinstance(result, Restart) and restarts < MAX_RESTARTS:
            restarts += 1
            candidate, index = result.candidate, 0
            ctx.batch.setdefault(candidate.name, candidate)
            continue
        index += 1
    return [*out, Decision(candidate.name, "skipped", None, "no stage decided", "")]
