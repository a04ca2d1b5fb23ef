"""Stage ``generalize``: a function written for one task (constants copied from the task, no
parameters, the task's numbers in its name) goes to the librarian model, and its
generalized version replaces it only if it reproduces every probe of the original in the
scratch kernel (then the cascade restarts with it). Otherwise the original goes on, tagged
``specific``. The model's reply is only a proposal: nothing here trusts it unchecked.
"""

from __future__ import annotations

from dynagraph.tools.codeparse import ExtractedFunction, extract_functions, is_specific
from dynagraph.tools.librarian.candidate import Candidate
from dynagraph.tools.librarian.context import AdmissionContext, Decision, Restart
from dynagraph.tools.librarian.model import GeneralizeReply
from dynagraph.tools.librarian.replay import shim_source
from dynagraph.tools.librarian.signature import parameters

__all__ = ["GeneralizeStage", "flag_specific", "generalized_candidate"]


def flag_specific(name: str, code: str, task_text: str = "") -> tuple[bool, list[str]]:
    """Whether a function looks written for one task, with the reasons (codeparse.is_specific;
    False for code that defines no readable function)."""
    if parameters(code) is None:
        return False, []
    try:
        return is_specific(ExtractedFunction(name, code, "", ""), task_text)
    except (SyntaxError, StopIteration):
        return False, []


def generalized_candidate(original: Candidate, reply: GeneralizeReply) -> Candidate | None:
    """The model's function as a candidate. Imports and module-level names it uses without
    defining are taken from the original's (a reply that relies on ``pd`` being imported)."""
    context = "\n".join([*original.imports, *original.globals, reply.code])
    found = [f for f in extract_functions(context) if f.name == reply.name]
    if not found:
        return None
    new = Candidate.from_function(found[0], step=original.step)
    new.calls = [c for c in new.calls if c != original.name]
    new.tags = [t for t in original.tags if t != "specific"]
    return new


class GeneralizeStage:
    name = "generalize"

    def __init__(self, *, only_flagged: bool = True) -> None:
        self.only_flagged = only_flagged  # False: every candidate goes to the model (benchmarks)

    def decide(self, candidate: Candidate, ctx: AdmissionContext) -> Restart | None:
        if not ctx.settings.generalize or candidate.generalized_from:
            return None
        flagged, reasons = flag_specific(candidate.name, candidate.code, ctx.origin.task)
        if not flagged and self.only_flagged:
            return None
        reasons = reasons or ["not flagged; generalized on request"]
        why = f"flagged specific ({'; '.join(reasons)})"

        def keep(reason: str) -> None:
            candidate.tags.append("specific")
            ctx.notes.append(
                Decision(candidate.name, "kept_specific", None, f"{why}; {reason}", self.name)
            )

        if ctx.model is None or ctx.verifier is None:
            return keep("no librarian model to generalize it")
        if not any(p.get("args_b64") for p in candidate.probes):  # nothing to check it against
            return keep("no replayable calls to check a generalization")
        try:
            reply = ctx.model.generalize(
                source=candidate.source(),
                task=ctx.origin.task,
                reasons=reasons,
                probes=candidate.probes,
            )
        except Exception as exc:  # no key, endpoint down, protocol broken: keep the original
            return keep(f"the model could not generalize it: {exc}")
        new = generalized_candidate(candidate, reply)
        if new is None:
            return keep(f"the model's reply did not define {reply.name}")
        if new.ast_hash == candidate.ast_hash:
            return keep("the model returned the same function")
        callers = [c.name for c in ctx.batch.values() if candidate.name in c.calls]
        if reply.call and callers:
            return keep(
                f"its generalization takes other parameters and {', '.join(callers)} call it "
                "by its name"
            )
        original = parameters(candidate.code)
        if reply.call and original is None:
            return keep("its parameters could not be read to check the generalization")
        shim = shim_source(original.source, reply.call) if reply.call and original else None
        ctx.verifier.recorded_probes()  # clear: the next probes recorded are the new function's
        report = ctx.verifier.check(new.name, ctx.sources_of(new), candidate.probes, shim=shim)
        if report.status != "pass":
            return keep(
                f"its generalization {new.name}{new.signature} was not admitted: {report.summary()}"
            )
        recorded = ctx.verifier.recorded_probes().get(new.name, [])
        new.probes = recorded or ([] if reply.call else list(candidate.probes))
        new.verified = True
        new.generalized_from = candidate.name
        new.tags.append("generalized")
        if not reply.call and new.name != candidate.name:
            new.aliases = [candidate.name]  # the original's calls bind unchanged
        new.checks.append(f"{report.summary()} of {candidate.name}")
        through = f" through {reply.call}" if reply.call else ""
        ctx.notes.append(
            Decision(
                candidate.name,
                "generalized",
                None,
                f"{why}; generalized into {new.name}{new.signature}, which "
                f"{report.summary()}{through}",
                self.name,
                new.name,
            )
        )
        return Restart(new)
