"""Stage ``verify``: define the candidate in the scratch kernel and replay its probes.

A function that does not define on its own, or gives other results than were recorded, is
rejected. Only recorded calls that *returned* can verify it: a call that raised proves nothing
about what the function computes (raising alike again is checked, as a secondary check). A
function with no returned call to replay goes on tagged ``unverified`` (never ``verified``, never
merged with another: tools/librarian/compare.py), or is kept out when
``librarian.admit_unverified`` is off.
"""

from __future__ import annotations

from dynagraph.tools.librarian.candidate import Candidate
from dynagraph.tools.librarian.context import AdmissionContext, Decision


class VerifyStage:
    name = "verify"

    def decide(self, candidate: Candidate, ctx: AdmissionContext) -> Decision | None:
        if candidate.verified:
            return None
        if ctx.verifier is None:
            return self._unverified(candidate, ctx, "not verified (no scratch kernel)")
        report = ctx.verifier.check(candidate.name, ctx.sources_of(candidate), candidate.probes)
        if report.status in ("fail", "undefinable"):
            return Decision(candidate.name, "rejected", None, report.summary(), self.name)
        if report.status == "pass":
            candidate.verified = True
            candidate.checks.append(report.summary())
            return None
        return self._unverified(candidate, ctx, f"unverified: {report.summary()}")

    def _unverified(self, candidate: Candidate, ctx: AdmissionContext, why: str) -> Decision | None:
        if not ctx.settings.admit_unverified:
            reason = f"{why}; librarian.admit_unverified is off"
            return Decision(candidate.name, "rejected", None, reason, self.name)
        candidate.tags.append("unverified")
        candidate.checks.append(why)
        return None
