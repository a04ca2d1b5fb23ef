"""Admission of new functions into the library: the librarian's decision pipeline.

A candidate is a function a successful cell defined, with the calls recorded to it (probes).
It goes through a cascade of stages, cheapest first; the first stage that decides ends it:

1. ``exact_hash``: the same normalized-AST hash is stored -> count a use, add nothing (a
   quarantined twin is refused; a pruned one is restored);
2. ``verify``: define it in a scratch kernel (dependencies first) and replay its probes; a
   function that does not define or whose probes do not reproduce is rejected;
3. ``generalize`` (tools/generalize.py): a function flagged task-specific goes to the model;
   the generalized version replaces it only if it reproduces every probe, and the cascade
   restarts with it; otherwise the original goes on, tagged ``specific``;
4. ``same_name`` / ``near`` / ``model`` (tools/dedup.py): behaviour, not text, decides:
   each side runs on the other's probes; the model is asked only when probes cannot settle it;
5. ``add``: a new record.

The model's reply protocols are documented in tools/generalize.py.

Every decision (and the generalization decisions on the way) is a :class:`Decision` with its
stage and reason, which the librarian writes to the run's report and the library's log.
Stages are objects with ``decide(candidate, ctx)`` returning a Decision (done), a
:class:`Restart` (go again from the top with another candidate) or None (next stage).
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from dynagraph.tools.library import FunctionLibrary, FunctionRecord, utc_now

if TYPE_CHECKING:
    from dynagraph.tools.codeparse import ExtractedFunction
    from dynagraph.tools.generalize import LibrarianModel
    from dynagraph.tools.verify import ScratchVerifier


@dataclass
class Candidate:
    """A function from a successful cell, ready to be judged."""

    name: str
    code: str
    ast_hash: str
    signature: str = ""
    docstring: str = ""
    imports: list[str] = field(default_factory=list)
    globals: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    probes: list[dict[str, Any]] = field(default_factory=list)
    step: int = 0
    tags: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    verified: bool = False
    generalized_from: str | None = None
    #: what the checks found on the way ("reproduces 2/2 probes"), added to the final reason
    checks: list[str] = field(default_factory=list)

    @classmethod
    def from_function(
        cls, fn: ExtractedFunction, probes: list[dict[str, Any]] | None = None, step: int = 0
    ) -> Candidate:
        """A candidate from what codeparse extracted from a cell, with its recorded calls."""
        return cls(
            name=fn.name,
            code=fn.code,
            ast_hash=fn.ast_hash,
            signature=fn.signature,
            docstring=fn.docstring,
            imports=list(fn.imports),
            globals=list(fn.globals),
            calls=list(fn.calls),
            probes=list(probes or []),
            step=step,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Candidate:
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})

    def source(self) -> str:
        """What defines it in a kernel: imports, globals, then the code."""
        parts = [*self.imports, *self.globals, self.code]
        return "\n".join(p for p in parts if p.strip()) + "\n"

    def doc_view(self) -> str:
        """The text its nearest neighbours are found by (as FunctionRecord.doc_view)."""
        return f"{self.name}{self.signature}\n{self.docstring}".strip()


@dataclass
class Origin:
    task: str = ""
    thread: str = ""
    model: str = ""
    tags: list[str] = field(default_factory=list)


@dataclass
class Decision:
    """What happened to one candidate; written to the run's report and the library's log.

    ``action``: added | duplicate | new_version | supersedes | generalized | kept_specific |
    rejected | skipped. ``target`` names the other function the decision is about (duplicate
    of, supersedes, generalized into).
    """

    name: str
    action: str
    record_id: str | None = None
    reason: str = ""
    stage: str = ""
    target: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Restart:
    """A stage replaced the candidate (its generalized version): run the cascade again."""

    candidate: Candidate


@dataclass
class CurationOptions:
    #: docstring-view cosine above which two functions are near (see LibrarianSettings)
    near_threshold: float = 0.90
    near_k: int = 5
    generalize: bool = True
    ask_model: bool = True
    #: count a use of the stored function when a candidate duplicates it (not for `library add`)
    count_uses: bool = True
    #: the library's index of the task being curated (stamped as ``last_used_task``)
    task_index: int | None = None


@dataclass
class CurationContext:
    library: FunctionLibrary
    origin: Origin
    batch: dict[str, Candidate]
    verifier: ScratchVerifier | None = None
    model: LibrarianModel | None = None
    options: CurationOptions = field(default_factory=CurationOptions)
    #: per candidate name: near functions the probes could not settle, with why
    ambiguous: dict[str, list[tuple[FunctionRecord, str]]] = field(default_factory=dict)
    #: decisions made on the way (generalized / kept_specific), reported before the final one
    notes: list[Decision] = field(default_factory=list)


class Stage(Protocol):
    name: str

    def decide(self, candidate: Candidate, ctx: CurationContext) -> Decision | Restart | None: ...


def merge_task_candidates(raw: Iterable[dict[str, Any]]) -> list[Candidate]:
    """One candidate per name: the last definition, with every probe recorded after it."""
    latest: dict[str, Candidate] = {}
    order: list[str] = []
    for item in raw:
        if item.get("probes_only"):
            if item["name"] in latest:
                latest[item["name"]].probes.extend(item.get("probes", []))
            continue
        cand = Candidate.from_dict(item)
        if cand.name not in latest:
            order.append(cand.name)
        latest[cand.name] = cand
    return [latest[name] for name in order]


# -- records ------------------------------------------------------------------------------------


def build_record(cand: Candidate, ctx: CurationContext, **extra: Any) -> FunctionRecord:
    library_names = {c for c in cand.calls if c in ctx.batch or ctx.library.get_by_name(c)}
    tags = list(dict.fromkeys([*ctx.origin.tags, *cand.tags]))
    extra.setdefault("last_used_task", ctx.options.task_index or 0)
    return FunctionRecord(
        name=cand.name,
        code=cand.code,
        ast_hash=cand.ast_hash,
        signature=cand.signature,
        docstring=cand.docstring,
        imports=list(cand.imports),
        globals=list(cand.globals),
        depends_on=sorted(library_names - {cand.name}),
        origin_task=ctx.origin.task,
        origin_thread=ctx.origin.thread,
        origin_model=ctx.origin.model,
        probes=list(cand.probes),
        tags=tags,
        aliases=[a for a in dict.fromkeys(cand.aliases) if a != cand.name],
        **extra,
    )


def with_reason(base: str, cand: Candidate) -> str:
    """The final reason: what decided, then what the checks on the way found."""
    return "; ".join([base, *cand.checks]) if cand.checks else base


def count_use(record: FunctionRecord, ctx: CurationContext) -> None:
    if ctx.options.count_uses:
        ctx.library.record_use(record.id, success=True, task_index=ctx.options.task_index)


def add_alias(record: FunctionRecord, names: Iterable[str], ctx: CurationContext) -> None:
    """Make ``names`` resolve to (and be defined with) ``record``; no write if nothing new."""
    new = [n for n in names if n != record.name and n not in record.aliases]
    if new:
        record.aliases = [*record.aliases, *dict.fromkeys(new)]
        ctx.library.add(record)


def supersede(
    old: FunctionRecord, cand: Candidate, ctx: CurationContext, why: str
) -> FunctionRecord:
    """Store ``cand`` in place of ``old`` (another name): ``old`` is archived, and its name
    and aliases stay callable as aliases of the new record."""
    cand.aliases = [*cand.aliases, old.name, *old.aliases]
    record = ctx.library.add(build_record(cand, ctx, supersedes=old.id))
    ctx.library.set_status(old.id, "archived", f"superseded by {cand.name} ({record.id}): {why}")
    return record


# -- definitions for the scratch kernel ---------------------------------------------------------


def dependency_sources(
    calls: Iterable[str], ctx: CurationContext, seen: set[str] | None = None
) -> list[str]:
    """Sources defining the functions ``calls`` names that the task or the library provides,
    dependencies first, each once (a cycle is cut where it closes)."""
    seen = set() if seen is None else seen
    out: list[str] = []
    for name in calls:
        if name in seen:
            continue
        seen.add(name)
        if name in ctx.batch:
            dep = ctx.batch[name]
            out += dependency_sources(dep.calls, ctx, seen)
            out.append(dep.source())
            continue
        record = ctx.library.get_by_name(name)
        if record is not None:
            out += dependency_sources(record.depends_on, ctx, seen)
            out.append(record.kernel_source())
    return out


def candidate_sources(cand: Candidate, ctx: CurationContext) -> list[str]:
    return [*dependency_sources(cand.calls, ctx, {cand.name}), cand.source()]


def record_sources(record: FunctionRecord, ctx: CurationContext) -> list[str]:
    return [*dependency_sources(record.depends_on, ctx, {record.name}), record.kernel_source()]


def parameters(signature_or_code: str) -> ast.arguments | None:
    """The parameters of a ``(a, b=2) -> int`` signature or of a function's code."""
    text = textwrap.dedent(signature_or_code).strip()
    source = text if text.startswith(("def ", "async def ", "@")) else f"def _f{text}: pass"
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    node = next(
        (n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)), None
    )
    return node.args if node is not None else None


def generality(docstring: str, code: str) -> tuple[int, int, int]:
    """How general and documented a function is, to keep the better of two duplicates."""
    args = parameters(code)
    count = 0 if args is None else len(args.posonlyargs + args.args + args.kwonlyargs)
    return (1 if docstring.strip() else 0, count, min(len(docstring.strip()), 2000))


def better_than(cand: Candidate, record: FunctionRecord) -> bool:
    """The candidate is strictly better documented or more general (ties keep the stored one:
    no churn)."""
    return generality(cand.docstring, cand.code) > generality(record.docstring, record.code)


# -- the simple stages --------------------------------------------------------------------------


class ExactDuplicateStage:
    """Same normalized hash: the same function. Count a use; add nothing."""

    name = "exact_hash"

    def decide(self, candidate: Candidate, ctx: CurationContext) -> Decision | None:
        existing = ctx.library.find_by_hash(candidate.ast_hash)
        if existing is None:
            return None
        label = f"{existing.name} v{existing.version}"
        if existing.status == "quarantined":
            return Decision(
                candidate.name,
                "rejected",
                existing.id,
                f"same code as {label}, which is quarantined: {existing.status_reason}",
                self.name,
                existing.name,
            )
        note = ""
        if existing.status == "archived":
            if existing.status_reason.startswith(PRUNED_PREFIX):
                ctx.library.set_status(existing.id, "active", "")
                note = ", restored from the archive"
            else:
                note = f" (archived: {existing.status_reason})"
        note += self._verify_unprobed(existing, candidate, ctx)
        add_alias(existing, candidate.aliases, ctx)
        count_use(existing, ctx)
        return Decision(
            candidate.name,
            "duplicate",
            existing.id,
            with_reason(f"same normalized code as {label}{note}", candidate),
            self.name,
            existing.name,
        )

    @staticmethod
    def _verify_unprobed(
        existing: FunctionRecord, candidate: Candidate, ctx: CurationContext
    ) -> str:
        """A stored function without probes meets its twin with probes (a later task called
        it, or ``library add --probe`` after a plain add): verify them and keep them."""
        if existing.probes or not candidate.probes or ctx.verifier is None:
            return ""
        report = ctx.verifier.check(
            candidate.name, candidate_sources(candidate, ctx), candidate.probes
        )
        if report.status != "pass":
            return f"; its new probes were not kept: {report.summary()}"
        existing.probes = list(candidate.probes)
        existing.tags = [t for t in existing.tags if t != "unverified"]
        ctx.library.add(existing)
        return f"; now verified: {report.summary()}"


class VerifyStage:
    """Define the candidate in a scratch kernel and replay its probes: a function that does not
    define on its own, or gives other results, is rejected; one without replayable probes goes
    on tagged ``unverified``."""

    name = "verify"

    def decide(self, candidate: Candidate, ctx: CurationContext) -> Decision | None:
        if candidate.verified:
            return None
        if ctx.verifier is None:
            candidate.tags.append("unverified")
            candidate.checks.append("not verified (no scratch kernel)")
            return None
        report = ctx.verifier.check(
            candidate.name, candidate_sources(candidate, ctx), candidate.probes
        )
        if report.status in ("fail", "undefinable"):
            return Decision(candidate.name, "rejected", None, report.summary(), self.name)
        candidate.verified = report.status == "pass"
        if not candidate.verified:
            candidate.tags.append("unverified")
            candidate.checks.append(f"unverified: {report.summary()}")
        else:
            candidate.checks.append(report.summary())
        return None


class AddStage:
    """Nothing else decided: a new function."""

    name = "add"

    def decide(self, candidate: Candidate, ctx: CurationContext) -> Decision | None:
        record = ctx.library.add(build_record(candidate, ctx))
        base = "new function"
        if candidate.generalized_from:
            base += f", generalized from {candidate.generalized_from}"
        return Decision(candidate.name, "added", record.id, with_reason(base, candidate), self.name)


def default_stages() -> list[Stage]:
    """The whole cascade, cheapest first (stages needing a kernel or a model step aside when
    the context has none)."""
    from dynagraph.tools.dedup import ModelVerdictStage, NearNeighbourStage, SameNameStage
    from dynagraph.tools.generalize import GeneralizeStage

    return [
        ExactDuplicateStage(),
        VerifyStage(),
        GeneralizeStage(),
        SameNameStage(),
        NearNeighbourStage(),
        ModelVerdictStage(),
        AddStage(),
    ]


class Curator:
    """Runs every candidate of a task through the stages, in order, and reports."""

    #: a candidate may be replaced (generalized) this many times before the cascade just goes on
    MAX_RESTARTS = 2

    def __init__(
        self,
        library: FunctionLibrary,
        stages: Sequence[Stage] | None = None,
        *,
        verifier: ScratchVerifier | None = None,
        model: LibrarianModel | None = None,
        options: CurationOptions | None = None,
    ) -> None:
        self.library = library
        self.stages = list(stages) if stages is not None else default_stages()
        self.verifier = verifier
        self.model = model
        self.options = options or CurationOptions()

    def curate(self, candidates: list[Candidate], origin: Origin) -> list[Decision]:
        ctx = CurationContext(
            self.library,
            origin,
            {c.name: c for c in candidates},
            verifier=self.verifier,
            model=self.model,
            options=self.options,
        )
        decisions: list[Decision] = []
        for cand in candidates:
            decisions += self.admit(cand, ctx)
        return decisions

    def admit(self, candidate: Candidate, ctx: CurationContext) -> list[Decision]:
        """The decisions about one candidate: any made on the way, then the final one."""
        out: list[Decision] = []
        restarts, index = 0, 0
        while index < len(self.stages):
            stage = self.stages[index]
            try:
                result = stage.decide(candidate, ctx)
            except Exception as exc:  # a stage failing must not lose the task's other functions
                result = Decision(
                    candidate.name, "rejected", None, f"{type(exc).__name__}: {exc}", stage.name
                )
            out += ctx.notes
            ctx.notes = []
            if isinstance(result, Decision):
                return [*out, result]
            if isinstance(result, Restart) and restarts < self.MAX_RESTARTS:
                restarts += 1
                candidate, index = result.candidate, 0
                ctx.batch.setdefault(candidate.name, candidate)
                continue
            index += 1
        return [*out, Decision(candidate.name, "skipped", None, "no stage decided", "")]


# -- the journal --------------------------------------------------------------------------------

#: Reason prefix of functions archived by pruning (an exact duplicate restores them).
PRUNED_PREFIX = "pruned:"


def log_entries(
    decisions: Iterable[Decision], origin: Origin, task_index: int | None = None
) -> list[dict[str, Any]]:
    """Decisions as the library's log stores them: with when, which task and which thread."""
    at = utc_now()
    return [
        {
            **d.to_dict(),
            "at": at,
            "task_index": task_index,
            "thread": origin.thread,
            "task": origin.task[:200],
        }
        for d in decisions
    ]


def prune(
    library: FunctionLibrary, unused_tasks: int, *, dry_run: bool = False
) -> tuple[int, list[FunctionRecord]]:
    """Archive (never delete) active functions not used in the last ``unused_tasks`` tasks.

    A function's last use is the last task that called it, a duplicate of it, or admitted it
    (``last_used_task``). Returns the library's task count and the functions archived (or, with
    ``dry_run``, that would be). Archived functions are restored with ``library restore``.
    """
    now = library.task_index()
    stale = [r for r in library.list(status="active") if now - r.last_used_task >= unused_tasks]
    if not dry_run:
        entries = []
        for record in stale:
            reason = (
                f"{PRUNED_PREFIX} not used in the last {unused_tasks} tasks "
                f"(last used in task {record.last_used_task}, now {now})"
            )
            library.set_status(record.id, "archived", reason)
            entries.append(Decision(record.name, "archived", record.id, reason, "prune"))
        library.log_decisions(log_entries(entries, Origin(thread="prune"), now))
    return now, stale
