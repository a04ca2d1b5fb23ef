"""Duplicates decided by behaviour: each side runs on the other's probes in the scratch kernel.

Text similarity only chooses which stored functions to compare (same name; nearest docstring
views above ``near_threshold``, or with the same signature shape); what two functions *do* on
the calls recorded for them decides:

- both reproduce each other's probes: the same function -> keep the better documented / more
  general one, the other name becomes an alias;
- the new one reproduces the stored one's probes, not the reverse: it generalizes it -> it
  supersedes the stored one, whose name stays callable as an alias;
- the stored one reproduces the new one's probes, not the reverse: nothing new -> duplicate;
- each fails the other's probes: distinct;
- a side has no replayable probe: ambiguous -> the librarian model is asked (ModelVerdictStage),
  only for neighbours above the threshold.

An alias is only ever added where the aliased name's probes passed through the function it now
names, so calls written for the old name keep working (FunctionRecord.kernel_source binds it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dynagraph.tools.curator import (
    Candidate,
    CurationContext,
    Decision,
    add_alias,
    better_than,
    build_record,
    candidate_sources,
    count_use,
    parameters,
    record_sources,
    supersede,
    with_reason,
)
from dynagraph.tools.library import FunctionRecord
from dynagraph.tools.verify import ReplayReport

Relation = Literal["same", "new_generalizes", "old_generalizes", "distinct", "ambiguous"]


@dataclass
class CrossRun:
    """The new function on the stored one's probes, and the stored one on the new one's."""

    new_on_old: ReplayReport
    old_on_new: ReplayReport
    #: every parameter name of the stored function is one of the new one's, and the reverse
    new_takes_old_parameters: bool = True
    old_takes_new_parameters: bool = True

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


def cross_run(cand: Candidate, record: FunctionRecord, ctx: CurationContext) -> CrossRun:
    assert ctx.verifier is not None
    new_on_old = ctx.verifier.check(cand.name, candidate_sources(cand, ctx), record.probes)
    old_on_new = ctx.verifier.check(record.name, record_sources(record, ctx), cand.probes)
    new_names, old_names = parameter_names(cand.code), parameter_names(record.code)
    return CrossRun(
        new_on_old,
        old_on_new,
        new_takes_old_parameters=old_names <= new_names,
        old_takes_new_parameters=new_names <= old_names,
    )


def parameter_names(code: str) -> set[str]:
    args = parameters(code)
    if args is None:
        return set()
    return {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs}


def signature_shape(signature_or_code: str) -> tuple[int, int] | None:
    """(required positional parameters, all parameters): two functions of one shape can be
    called with each other's arguments."""
    args = parameters(signature_or_code)
    if args is None:
        return None
    positional = args.posonlyargs + args.args
    required = len(positional) - len(args.defaults)
    return required, len(positional) + len(args.kwonlyargs)


class SameNameStage:
    """A stored function of the same name (or alias): a new version unless it behaves the same.

    The name always resolves to the newest active version; older versions are archived with
    the reason and stay retrievable by id (``library show``, ``versions``).
    """

    name = "same_name"

    def decide(self, candidate: Candidate, ctx: CurationContext) -> Decision | None:
        current = ctx.library.get_by_name(candidate.name)
        if current is None:
            return None
        via_alias = current.name != candidate.name
        run = cross_run(candidate, current, ctx) if ctx.verifier is not None else None
        relation = run.relation if run is not None else "ambiguous"
        label = f"{current.name} v{current.version}"
        if relation in ("same", "old_generalizes") and (
            via_alias or not better_than(candidate, current)
        ):
            count_use(current, ctx)
            why = "same results" if relation == "same" else f"{label} reproduces its probes"
            return Decision(
                candidate.name,
                "duplicate",
                current.id,
                with_reason(f"{why} as {label}: {run.summary(candidate.name, label)}", candidate),
                self.name,
                current.name,
            )
        if via_alias:
            # Another function wants a name that was only an alias: the name goes to it.
            current.aliases = [a for a in current.aliases if a != candidate.name]
            ctx.library.add(current)
            candidate.checks.append(f"the name was an alias of {current.name}, now freed")
            return None
        record = ctx.library.add(
            build_record(candidate, ctx, version=current.version + 1, supersedes=current.id)
        )
        ctx.library.set_status(current.id, "archived", f"superseded by v{record.version}")
        how = {
            "same": "same results, better documented",
            "new_generalizes": "generalizes it",
            "distinct": "different behaviour",
            "ambiguous": "behaviour not comparable on the probes",
        }.get(relation, relation)
        detail = f": {run.summary(candidate.name, label)}" if run is not None else ""
        return Decision(
            candidate.name,
            "new_version",
            record.id,
            with_reason(
                f"v{record.version} supersedes v{current.version} ({how}){detail}", candidate
            ),
            self.name,
            current.name,
        )


class NearNeighbourStage:
    """Functions of other names that look close (cosine above the threshold, or the same
    signature shape among the nearest): cross-run, then duplicate / supersede / go on."""

    name = "near"

    def compare(
        self, candidate: Candidate, record: FunctionRecord, ctx: CurationContext
    ) -> CrossRun:
        return cross_run(candidate, record, ctx)

    def neighbours(
        self, candidate: Candidate, ctx: CurationContext
    ) -> list[tuple[FunctionRecord, float]]:
        if ctx.options.near_k <= 0:
            return []
        shape = signature_shape(candidate.code)
        found = []
        for hit in ctx.library.nearest(candidate.doc_view(), k=ctx.options.near_k):
            record = hit.record
            if record.name == candidate.name or candidate.name in record.aliases:
                continue
            near = hit.score >= ctx.options.near_threshold
            if near or (shape is not None and signature_shape(record.signature) == shape):
                found.append((record, hit.score))
        return found

    def decide(self, candidate: Candidate, ctx: CurationContext) -> Decision | None:
        for record, score in self.neighbours(candidate, ctx):
            near = score >= ctx.options.near_threshold
            if ctx.verifier is None:
                if near:
                    ctx.ambiguous.setdefault(candidate.name, []).append(
                        (record, "no scratch kernel to compare them in")
                    )
                continue
            run = self.compare(candidate, record, ctx)
            relation = run.relation
            summary = f"cosine {score:.3f}; {run.summary(candidate.name, record.name)}"
            if (
                relation == "same"
                and better_than(candidate, record)
                or relation == "new_generalizes"
            ):
                what = "same results, better documented" if relation == "same" else "generalizes it"
                stored = supersede(record, candidate, ctx, what)
                return Decision(
                    candidate.name,
                    "supersedes",
                    stored.id,
                    with_reason(
                        f"{what}; {record.name} stays callable as an alias: {summary}", candidate
                    ),
                    self.name,
                    record.name,
                )
            if relation in ("same", "old_generalizes"):
                what = "same results" if relation == "same" else f"{record.name} generalizes it"
                add_alias(record, [candidate.name, *candidate.aliases], ctx)
                count_use(record, ctx)
                return Decision(
                    candidate.name,
                    "duplicate",
                    record.id,
                    with_reason(
                        f"{what} as {record.name}, kept; {candidate.name} is now its alias: "
                        f"{summary}",
                        candidate,
                    ),
                    self.name,
                    record.name,
                )
            if relation == "ambiguous" and near:
                ctx.ambiguous.setdefault(candidate.name, []).append((record, summary))
        return None


def _same_parameters(a: str, b: str) -> bool:
    pa, pb = parameters(a), parameters(b)
    if pa is None or pb is None:
        return False
    names = lambda p: [x.arg for x in p.posonlyargs + p.args]  # noqa: E731
    return names(pa) == names(pb)


def _extends(new_code: str, old_code: str) -> bool:
    """The new function takes the old one's positional parameters first, and every extra
    parameter has a default: the old calls bind unchanged."""
    new, old = parameters(new_code), parameters(old_code)
    if new is None or old is None:
        return False
    new_pos, old_pos = new.posonlyargs + new.args, old.posonlyargs + old.args
    if [a.arg for a in new_pos[: len(old_pos)]] != [a.arg for a in old_pos]:
        return False
    extra = len(new_pos) - len(old_pos)
    return extra <= len(new.defaults) and all(d is not None for d in new.kw_defaults)


class ModelVerdictStage:
    """Neighbours the probes could not settle: the librarian model decides (duplicate of X /
    generalizes X / distinct). Without a model the candidate is added, with the doubt noted."""

    name = "model"
    #: the nearest unsettled neighbours shown to the model (the prompt stays short)
    MAX_SHOWN = 3

    def decide(self, candidate: Candidate, ctx: CurationContext) -> Decision | None:
        pending = ctx.ambiguous.pop(candidate.name, [])[: self.MAX_SHOWN]
        if not pending:
            return None
        names = ", ".join(r.name for r, _ in pending)
        if ctx.model is None or not ctx.options.ask_model:
            candidate.checks.append(f"near {names}, not settled by probes; no model asked")
            return None
        try:
            verdict = ctx.model.judge(
                name=candidate.name,
                source=candidate.source(),
                task=ctx.origin.task,
                probes=candidate.probes,
                neighbours=[(r.name, r.kernel_source(), r.probes) for r, _ in pending],
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
            if _same_parameters(candidate.code, record.code):
                add_alias(record, [candidate.name], ctx)
            count_use(record, ctx)
            return Decision(
                candidate.name,
                "duplicate",
                record.id,
                with_reason(
                    f"the librarian model: duplicate of {record.name}: {verdict.reason}", candidate
                ),
                self.name,
                record.name,
            )
        old_name = record.name
        stored = ctx.library.add(build_record(candidate, ctx, supersedes=record.id))
        if _extends(candidate.code, record.code):
            add_alias(stored, [old_name, *record.aliases], ctx)
        ctx.library.set_status(
            record.id, "archived", f"superseded by {candidate.name} ({stored.id}): the model"
        )
        return Decision(
            candidate.name,
            "supersedes",
            stored.id,
            with_reason(
                f"the librarian model: generalizes {old_name}: {verdict.reason}", candidate
            ),
            self.name,
            old_name,
        )
