"""Stage ``near``: functions of other names that look close (docstring-view cosine above
``near_threshold``, or the candidate's signature shape among the ``near_k`` nearest) are
cross-run against it. Same behaviour or generalizing it: the better one is kept and the other
name becomes its alias; otherwise the cascade goes on (what the probes could not settle is
left to stage ``model``)."""

from __future__ import annotations

from dynagraph.tools.librarian.candidate import Candidate
from dynagraph.tools.librarian.compare import CrossRun, better_than, cross_run
from dynagraph.tools.librarian.context import AdmissionContext, Decision
from dynagraph.tools.librarian.signature import parameters
from dynagraph.tools.library import FunctionRecord


def signature_shape(signature_or_code: str) -> tuple[int, int] | None:
    found = parameters(signature_or_code)
    return found.shape if found is not None else None


class NearNeighbourStage:
    name = "near"

    def compare(
        self, candidate: Candidate, record: FunctionRecord, ctx: AdmissionContext
    ) -> CrossRun:
        """One cross-run (a bench overrides this to cache and measure)."""
        return cross_run(candidate, record, ctx)

    def neighbours(
        self, candidate: Candidate, ctx: AdmissionContext
    ) -> list[tuple[FunctionRecord, float]]:
        settings = ctx.settings
        if settings.near_k <= 0:
            return []
        shape = signature_shape(candidate.code)
        found = []
        for hit in ctx.library.nearest(candidate.doc_view(), k=settings.near_k):
            record = hit.record
            if record.name == candidate.name or candidate.name in record.aliases:
                continue
            near = hit.score >= settings.near_threshold
            if near or (shape is not None and signature_shape(record.signature) == shape):
                found.append((record, hit.score))
        return found

    def decide(self, candidate: Candidate, ctx: AdmissionContext) -> Decision | None:
        for record, score in self.neighbours(candidate, ctx):
            near = score >= ctx.settings.near_threshold
            if ctx.verifier is None:  # nothing verified: never merged (compare.py: unproven)
                continue
            run = self.compare(candidate, record, ctx)
            relation = run.relation
            summary = f"cosine {score:.3f}; {run.summary(candidate.name, record.name)}"
            if relation == "new_generalizes" or (
                relation == "same" and better_than(candidate, record)
            ):
                what = "same results, better documented" if relation == "same" else "generalizes it"
                stored = ctx.supersede(record, candidate, what)
                why = f"{what}; {record.name} stays callable as an alias: {summary}"
                return Decision.about(candidate, self.name, "supersedes", record, why, stored.id)
            if relation in ("same", "old_generalizes"):
                what = "same results" if relation == "same" else f"{record.name} generalizes it"
                ctx.add_alias(record, [candidate.name, *candidate.aliases])
                ctx.count_use(record)
                why = f"{what} as {record.name}, kept; {candidate.name} is now its alias: {summary}"
                return Decision.about(candidate, self.name, "duplicate", record, why)
            if relation == "ambiguous" and near:
                ctx.ambiguous.setdefault(candidate.name, []).append((record, summary))
        return None
