"""Stage ``add``, the last: no earlier stage decided, so it is a new function."""

from __future__ import annotations

from dynagraph.tools.librarian.candidate import Candidate
from dynagraph.tools.librarian.context import AdmissionContext, Decision


class AddStage:
    name = "add"

    def decide(self, candidate: Candidate, ctx: AdmissionContext) -> Decision:
        record = ctx.store(candidate)
        base = "new function"
        if candidate.generalized_from:
            base += f", generalized from {candidate.generalized_from}"
        return Decision(candidate.name, "added", record.id, candidate.reason(base), self.name)
