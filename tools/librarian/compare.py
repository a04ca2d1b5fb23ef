"""Two functions compared by behaviour: each runs on the other's probes in the scratch kernel.

Text similarity only chooses which stored functions to compare (same name; nearest docstring
views); what the two *do* on the calls recorded for them decides (:attr:`CrossRun.relation`):

- both reproduce each other's probes: the same function;
- one reproduces the other's probes, takes every parameter the other takes, and the other
  cannot even be called with its arguments: it generalizes the other;
- a different result on a call both accept, or a side that does not define: distinct;
- a side has no replayable probe: ambiguous (the model may be asked);
- a side has no recorded call that *returned* (only calls that raised, or none) or was admitted
  ``unverified``: unproven. Nothing is known of what it computes, so it is never merged with
  another function (no alias, no duplicate, no model verdict). Raising calls that raise alike
  are a secondary check in a replay (tools/librarian/replay.py), never a reason on their own.

An alias is only ever added where the aliased name's probes passed through the function it now
names, so calls written for the old name keep working (FunctionRecord.kernel_source binds it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dynagraph.tools.librarian.candidate import Candidate
from dynagraph.tools.librarian.context import AdmissionContext
from dynagraph.tools.librarian.replay import ReplayReport, has_returned_call
from dynagraph.tools.librarian.signature import parameters
from dynagraph.tools.library import FunctionRecord

__all__ = ["CrossRun", "Relation", "better_than", "cross_run", "proven"]

Relation = Literal[
    "same", "new_generalizes", "old_generalizes", "distinct", "ambiguous", "unproven"
]


@dataclass
class CrossRun:
    """The new function on the stored one's probes, and the stored one on the new one's."""

    new_on_old: ReplayReport
    old_on_new: ReplayReport
    #: every parameter name of the stored function is one of the new one's, and the reverse
    new_takes_old_parameters: bool = True
    old_takes_new_parameters: bool = True
    #: each side has a recorded call that returned and was verified (:func:`proven`)
    new_proven: bool = True
    old_proven: bool = True

    @property
    def relation(self) -> Relation:
        """How the two behave on the calls known for them.

        One side generalizes the other when it reproduces every call of the other, takes every
        parameter the other takes (by name), and the other *cannot be called* with its
        arguments (Python refuses to bind them: a parameter it lacks). A different result on a
        call both accept is a different function, however the other direction went: with one
        or two probes per function, "reproduces the other's calls" alone would make a mean
        generalize a mode that happened to agree once, or a function whose keyword calls the
        other refuses only because its parameters are named otherwise.
        """
        new, old = self.new_on_old, self.old_on_new
        if not (self.new_proven and self.old_proven):
            return "unproven"
        if new.status == "pass" and old.status == "pass":
            return "same"
        if new.status == "pass" and old.status == "fail" and old.refused_only:
            return "new_generalizes" if self.new_takes_old_parameters else "distinct"
        if old.status == "pass" and new.status == "fail" and new.refused_only:
            return "old_generalizes" if self.old_takes_new_parameters else "distinct"
        if "fail" in (new.status, old.status) or "undefinable" in (new.status, old.status):
            return "distinct"
        return "ambiguous"

    def summary(self, new: str, old: str) -> str:
        return (
            f"{new} on {old}'s probes: {self.new_on_old.summary()}; "
            f"{old} on {new}'s probes: {self.old_on_new.summary()}"
        )


def proven(function: Candidate | FunctionRecord) -> bool:
    """Whether a function has been shown to compute something: a recorded call that returned,
    and (a candidate) verified by replaying it, or (a record) not stored ``unverified``."""
    if not has_returned_call(function.probes):
        return False
    if isinstance(function, Candidate):
        return function.verified
    return "unverified" not in function.tags


def _parameter_names(code: str) -> set[str]:
    found = parameters(code)
    return set(found.names) if found is not None else set()


def cross_run(cand: Candidate, record: FunctionRecord, ctx: AdmissionContext) -> CrossRun:
    """Run each side on the other's probes (needs ``ctx.verifier``). When a side is not
    :func:`proven`, nothing is run: the relation is ``unproven`` whatever the probes say."""
    assert ctx.verifier is not None
    if not (proven(cand) and proven(record)):
        empty = ReplayReport
        return CrossRun(
            empty(cand.name), empty(record.name), new_proven=proven(cand), old_proven=proven(record)
        )
    new_on_old = ctx.verifier.check(cand.name, ctx.sources_of(cand), record.probes)
    old_on_new = ctx.verifier.check(record.name, ctx.sources_of(record), cand.probes)
    new_names, old_names = _parameter_names(cand.code), _parameter_names(record.code)
    return CrossRun(
        new_on_old,
        old_on_new,
        new_takes_old_parameters=old_names <= new_names,
        old_takes_new_parameters=new_names <= old_names,
    )


def _generality(docstring: str, code: str) -> tuple[int, int, int]:
    """How documented and general a function is: docstring or not, parameters, docstring size."""
    found = parameters(code)
    count = len(found.names) if found is not None else 0
    return (1 if docstring.strip() else 0, count, min(len(docstring.strip()), 2000))


def better_than(cand: Candidate, record: FunctionRecord) -> bool:
    """The candidate is strictly better documented or more general, so of two duplicates it is
    the one to keep (ties keep the stored one: no churn)."""
    return _generality(cand.docstring, cand.code) > _generality(record.docstring, record.code)
