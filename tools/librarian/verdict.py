"""Stage ``model``: near functions the probes could not settle go to the librarian model
(duplicate of X / generalizes X / distinct). Without a model, or when it cannot answer, the
candidate goes on to be added, with the doubt noted in its reason."""

from __future__ import annotations

from dynagraph.tools.librarian.candidate import Candidate
from dynagraph.tools.librarian.context import AdmissionContext, Decision
from dynagraph.tools.librarian.model import Neighbour
from dynagraph.tools.librarian.signature import parameters


def _same_positional_names(a: str, b: str) -> bool:
    pa, pb = parameters(a), parameters(b)
    return pa is not None and pb is not None and pa.positional == pb.positional


def _extends(new_code: str, old_code: str) -> bool:
    new, old = parameters(new_code), parameters(old_code)
    return new is not None and old is not None and new.extends(old)


class ModelVerdictStage:
    name = "model"
    #: the nearest unsettled neighbours shown to the model (the prompt stays short)
    MAX_SHOWN = 3

    def decide(self, candidate: Candidate, ctx: AdmissionContext) -> Decision | None:
        pending = ctx.ambiguous.pop(candidate.name, [])[: self.MAX_SHOWN]
        if not pending:
            return None
        names = ", ".join(r.name for r, _ in pending)
        if ctx.model is None or not ctx.settings.ask_model:
            candidate.checks.append(f"near {names}, not settled by probes; no model asked")
            return None
        try:
            verdict = ctx.model.verdict(
                name=candidate.name,
                source=candidate.source(),
                task=ctx.origin.task,
                probes=candidate.probes,
                neighbours=[Neighbour(r.name, r.kernel_source(), r.probes) for r, _ in pending],
                why="; ".join(why for _, why in pending),
            )
        except Exception as exc:  # no key, endpoint down, protocol broken: add, say why
            candidate.checks.append(f"near {names}; the model could not judge: {exc}")
            return None
        if verdict.verdict == "distinct" or verdict.of is None:
            candidate.checks.append(f"the model judged it distinct from {names}: {verdict.reason}")
            return None
        record = next(r for r, _ in pending if r.name == verdict.of)
        if verdict.verdict == "duplicate":
            if _same_positional_names(candidate.code, record.code):
                ctx.add_alias(record, [candidate.name])
            ctx.count_use(record)
            why = f"the librarian model: duplicate of {record.name}: {verdict.reason}"
            return Decision.about(candidate, self.name, "duplicate", record, why)
        keep_names = _extends(candidate.code, record.code)
        stored = ctx.supersede(record, candidate, "the model", keep_old_names=keep_names)
        why = f"the librarian model: generalizes {record.name}: {verdict.reason}"
        return Decision.about(candidate, self.name, "supersedes", record, why, stored.id)
