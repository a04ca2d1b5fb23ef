"""Stage ``exact_hash``: the same normalized-AST hash is already stored, so it is the same
function. Count a use and add nothing; a quarantined twin is refused, a pruned one restored.
The hash covers the function's code, not its imports and module-level names: a twin whose
differ (``SCALE = 0.5`` against ``SCALE = 10``, ``sqrt`` from ``cmath`` against ``math``)
computes something else, and is refused with why, never counted as the stored function."""

from __future__ import annotations

import ast

from dynagraph.tools.codeparse import parse_python
from dynagraph.tools.librarian.candidate import Candidate
from dynagraph.tools.librarian.context import AdmissionContext, Decision
from dynagraph.tools.librarian.journal import PRUNED_PREFIX
from dynagraph.tools.library import FunctionRecord


class ExactDuplicateStage:
    name = "exact_hash"

    def decide(self, candidate: Candidate, ctx: AdmissionContext) -> Decision | None:
        existing = ctx.library.find_by_hash(candidate.ast_hash)
        if existing is None:
            return None
        label = f"{existing.name} v{existing.version}"
        other = context_difference(candidate, existing)
        if other is not None:
            why = (
                f"same code as {label} but {other}: the library keys a function by its code, so "
                "it cannot hold both; rename the module-level name or pass it as a parameter"
            )
            return Decision(candidate.name, "rejected", existing.id, why, self.name, existing.name)
        if existing.status == "quarantined":
            why = f"same code as {label}, which is quarantined: {existing.status_reason}"
            return Decision(candidate.name, "rejected", existing.id, why, self.name, existing.name)
        note = ""
        if existing.status == "archived":
            if existing.status_reason.startswith(PRUNED_PREFIX):
                ctx.library.set_status(existing.id, "active", "")
                note = ", restored from the archive"
            else:
                note = f" (archived: {existing.status_reason})"
        note += self._verify_unprobed(existing, candidate, ctx)
        ctx.add_alias(existing, candidate.aliases)
        ctx.count_use(existing)
        why = f"same normalized code as {label}{note}"
        return Decision.about(candidate, self.name, "duplicate", existing, why)

    @staticmethod
    def _verify_unprobed(
        existing: FunctionRecord, candidate: Candidate, ctx: AdmissionContext
    ) -> str:
        """A stored function without probes meets its twin with probes (a later task called
        it, or ``library add --probe`` after a plain add): verify them and keep them."""
        if existing.probes or not candidate.probes or ctx.verifier is None:
            return ""
        report = ctx.verifier.check(candidate.name, ctx.sources_of(candidate), candidate.probes)
        if report.status != "pass":
            return f"; its new probes were not kept: {report.summary()}"
        existing.probes = list(candidate.probes)
        existing.tags = [t for t in existing.tags if t != "unverified"]
        ctx.library.add(existing)
        return f"; now verified: {report.summary()}"


def context_difference(candidate: Candidate, existing: FunctionRecord) -> str | None:
    """How the candidate's imports or module-level names differ from its code twin's (None:
    they do not), compared as statements, not as text."""
    for what, mine, theirs in (
        ("other imports", candidate.imports, existing.imports),
        ("other module-level names", candidate.globals, existing.globals),
    ):
        here, there = _statements(mine), _statements(theirs)
        if here != there:
            only = sorted(here - there) or sorted(there - here)
            return f"{what} ({only[0][:80]} in one, not the other)"
    return None


def _statements(sources: list[str]) -> set[str]:
    out = set()
    for source in sources:
        try:
            out.add(ast.unparse(parse_python(source.strip())))
        except SyntaxError:  # kept as written, spaces folded
            out.add(" ".join(source.split()))
    return out - {""}
