"""Stage ``policy``: what a candidate may do, before it runs anywhere (after ``exact_hash``,
before ``verify`` starts the scratch kernel).

0. Its name must not be a keyword's, a builtin's or an initial action's (``final_answer``):
   reused, the function is defined under its name in a task's kernel and would replace
   ``len`` or the action there. Otherwise it is **rejected**.
1. Its definition must run nothing but its imports and its ``def``
   (tools/library/integrity.py: ``definition_problem``): otherwise it is **rejected**.
2. It is tagged with its capabilities (tools/capabilities.py on its code and imports, plus the
   tags of the functions it calls, transitively: the task's other candidates and the library).
3. It goes to **quarantine** (stored with status ``quarantined`` and the reason, never retrieved)
   when a tag is in ``librarian.deny_capabilities``, when a version of its name is quarantined
   (a quarantined function blocks its name until ``dynagraph library restore NAME``), or when
   it is near a quarantined function (the near stage's neighbour test: docstring-view cosine of
   at least ``near_threshold``). A quarantined function is never run to compare it.
"""

from __future__ import annotations

from dynagraph.tools.capabilities import CAPABILITIES, capabilities_of
from dynagraph.tools.librarian.candidate import Candidate
from dynagraph.tools.librarian.context import AdmissionContext, Decision
from dynagraph.tools.library.integrity import definition_problem, taken_name

__all__ = ["PolicyStage", "candidate_capabilities"]


def candidate_capabilities(candidate: Candidate, ctx: AdmissionContext) -> list[str]:
    """The candidate's capabilities with those of every function it calls (a cycle is cut)."""
    found: set[str] = set()
    pending, seen = [candidate], {candidate.name}
    while pending:
        cand = pending.pop()
        found.update(capabilities_of(cand.code, cand.imports))
        for name in cand.calls:
            if name in seen:
                continue
            seen.add(name)
            if name in ctx.batch:
                pending.append(ctx.batch[name])
            elif (record := ctx.library.get_by_name(name)) is not None:
                found.update(record.capabilities)  # stored tags are already transitive
    return [c for c in CAPABILITIES if c in found]


class PolicyStage:
    name = "policy"

    def decide(self, candidate: Candidate, ctx: AdmissionContext) -> Decision | None:
        taken = taken_name(candidate.name, ctx.action_names)
        if taken:
            return Decision(candidate.name, "rejected", None, taken, self.name)
        problem = definition_problem(
            candidate.code, candidate.imports, candidate.globals, name=candidate.name
        )
        if problem:
            why = f"defining it would run code a task did not ask for: {problem}"
            return Decision(candidate.name, "rejected", None, why, self.name)
        caps = candidate_capabilities(candidate, ctx)
        candidate.tags = list(dict.fromkeys([*candidate.tags, *caps]))
        denied = [c for c in caps if c in ctx.settings.deny_capabilities]
        if denied:
            why = f"denied capabilities: {', '.join(denied)} (librarian.deny_capabilities)"
            return self.quarantine(candidate, ctx, why)
        why = self.blocked_by(candidate, ctx)
        return self.quarantine(candidate, ctx, why) if why else None

    @staticmethod
    def blocked_by(candidate: Candidate, ctx: AdmissionContext) -> str | None:
        """Why a quarantined function blocks this candidate (None: none does)."""
        for record in reversed(ctx.library.versions(candidate.name)):
            if record.status == "quarantined":
                return (
                    f"the name {candidate.name} is quarantined ({record.name} v{record.version}: "
                    f"{record.status_reason or 'no reason given'}); "
                    f"`dynagraph library restore {record.name}` lifts it"
                )
        threshold = ctx.settings.near_threshold
        if ctx.settings.near_k <= 0:
            return None
        for hit in ctx.library.nearest(
            candidate.doc_view(), k=ctx.settings.near_k, status="quarantined"
        ):
            if hit.score >= threshold and hit.record.name != candidate.name:
                record = hit.record
                return (
                    f"near the quarantined {record.name} v{record.version} (cosine "
                    f"{hit.score:.3f} >= {threshold}: {record.status_reason or 'no reason'}); "
                    f"`dynagraph library restore {record.name}` lifts it"
                )
        return None

    def quarantine(self, candidate: Candidate, ctx: AdmissionContext, why: str) -> Decision:
        """Store the candidate quarantined (one write: it is never active for a moment)."""
        version = max((v.version for v in ctx.library.versions(candidate.name)), default=0) + 1
        stored = ctx.store(candidate, version=version, quarantined=why)
        return Decision(candidate.name, "quarantined", stored.id, candidate.reason(why), self.name)
