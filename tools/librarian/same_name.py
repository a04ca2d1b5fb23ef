"""Stage ``same_name``: a stored function has the candidate's name (or alias).

A duplicate when the two behave the same (or the stored one covers the candidate) and the
candidate is no better; otherwise a new version. The name always resolves to the newest active
version; older versions are archived with the reason and stay retrievable by id.
"""

from __future__ import annotations

from dynagraph.tools.librarian.candidate import Candidate
from dynagraph.tools.librarian.compare import better_than, cross_run
from dynagraph.tools.librarian.context import AdmissionContext, Decision

#: How each relation reads in a new version's reason.
_VERSION_REASON = {
    "same": "same results, better documented",
    "new_generalizes": "generalizes it",
    "distinct": "different behaviour",
    "ambiguous": "behaviour not comparable on the probes",
    "unproven": "no recorded call returned to compare them on",
}


class SameNameStage:
    name = "same_name"

    def decide(self, candidate: Candidate, ctx: AdmissionContext) -> Decision | None:
        current = ctx.library.get_by_name(candidate.name)
        if current is None:
            return None
        via_alias = current.name != candidate.name
        run = cross_run(candidate, current, ctx) if ctx.verifier is not None else None
        relation = run.relation if run is not None else "ambiguous"
        label = f"{current.name} v{current.version}"
        detail = f": {run.summary(candidate.name, label)}" if run is not None else ""
        if relation in ("same", "old_generalizes") and (
            via_alias or not better_than(candidate, current)
        ):
            ctx.count_use(current)
            why = "same results" if relation == "same" else f"{label} reproduces its probes"
            return Decision.about(
                candidate, self.name, "duplicate", current, f"{why} as {label}{detail}"
            )
        if via_alias:
            # Another function wants a name that was only an alias: the name goes to it.
            current.aliases = [a for a in current.aliases if a != candidate.name]
            ctx.library.add(current)
            candidate.checks.append(f"the name was an alias of {current.name}, now freed")
            return None
        record = ctx.store(candidate, version=current.version + 1, supersedes=current.id)
        ctx.library.set_status(current.id, "archived", f"superseded by v{record.version}")
        how = _VERSION_REASON.get(relation, relation)
        why = f"v{record.version} supersedes v{current.version} ({how}){detail}"
        return Decision.about(candidate, self.name, "new_version", current, why, record.id)
