"""What the stages share: the :class:`AdmissionContext` (library, scratch kernel, model,
settings, the task's other candidates), the :class:`Decision` they return and the few writes
more than one stage makes (counting a use, adding an alias, superseding a record).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from dynagraph.tools.codeparse import class_names
from dynagraph.tools.kernel.definitions import define_code
from dynagraph.tools.librarian.candidate import Candidate, Origin, to_record
from dynagraph.tools.librarian.model import LibrarianModel
from dynagraph.tools.librarian.replay import main_classes
from dynagraph.tools.librarian.scratch import ScratchVerifier
from dynagraph.tools.librarian.settings import LibrarianSettings
from dynagraph.tools.library import FunctionLibrary, FunctionRecord

__all__ = ["AdmissionContext", "Decision", "Restart", "Stage"]


@dataclass
class Decision:
    """What happened to one candidate; written to the run's report and the library's log.

    ``action``: added | duplicate | new_version | supersedes | generalized | kept_specific |
    rejected | skipped (and archived / active / quarantined for pruning and the CLI).
    ``target`` names the other function the decision is about (duplicate of, supersedes,
    generalized into).
    """

    name: str
    action: str
    record_id: str | None = None
    reason: str = ""
    stage: str = ""
    target: str | None = None

    @classmethod
    def about(
        cls,
        cand: Candidate,
        stage: str,
        action: str,
        other: FunctionRecord,
        why: str,
        record_id: str | None = None,
    ) -> Decision:
        """A final decision about ``cand`` that concerns the stored function ``other`` (the
        record is ``other`` unless another id is given); the reason ends with what the checks
        on the way found."""
        return cls(cand.name, action, record_id or other.id, cand.reason(why), stage, other.name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Restart:
    """A stage replaced the candidate (its generalized version): run the cascade again."""

    candidate: Candidate


@dataclass
class AdmissionContext:
    """Everything one admission needs. Without a ``verifier`` nothing is replayed (candidates
    are tagged ``unverified``); without a ``model`` nothing is generalized or judged by it."""

    library: FunctionLibrary
    origin: Origin
    settings: LibrarianSettings = field(default_factory=LibrarianSettings)
    verifier: ScratchVerifier | None = None
    model: LibrarianModel | None = None
    #: count a use of the stored function when a candidate duplicates it (not for `library add`)
    count_uses: bool = True
    #: the library's index of the task being admitted (stamped as ``last_used_task``)
    task_index: int | None = None
    #: the candidates of this admission by name (set by ``admit``): they may call each other
    batch: dict[str, Candidate] = field(default_factory=dict)
    #: per candidate name: near functions the probes could not settle, with why
    ambiguous: dict[str, list[tuple[FunctionRecord, str]]] = field(default_factory=dict)
    #: decisions made on the way (generalized / kept_specific), reported before the final one
    notes: list[Decision] = field(default_factory=list)
    #: the initial actions' names (final_answer, read_file, ...): no function may take one, or
    #: defining it as a library hit would replace the action in later tasks
    action_names: frozenset[str] = frozenset()

    # -- definitions for the scratch kernel -----------------------------------------------------
    def dependency_sources(self, calls: Iterable[str], seen: set[str]) -> list[str]:
        """Cells defining the functions ``calls`` names that the task or the library provides,
        dependencies first, each once (a cycle is cut where it closes), each in a namespace of
        its own as a later task's kernel defines them."""
        out: list[str] = []
        for name in calls:
            if name in seen:
                continue
            seen.add(name)
            if name in self.batch:
                dep = self.batch[name]
                out += self.dependency_sources(dep.calls, seen)
                out.append(self.isolated(dep))
            elif (record := self.library.get_by_name(name)) is not None:
                out += self.dependency_sources(record.depends_on, seen)
                out.append(isolated_source(record))
        return out

    def sources_of(self, function: Candidate | FunctionRecord) -> list[str]:
        """What defines ``function`` in the scratch kernel: its dependencies, then itself."""
        if isinstance(function, Candidate):
            seen = {function.name}
            deps = self.dependency_sources(function.calls, seen)
            return [*deps, *self.argument_classes(function, seen), self.isolated(function)]
        deps = self.dependency_sources(function.depends_on, {function.name})
        return [*deps, isolated_source(function)]

    def argument_classes(self, cand: Candidate, seen: set[str]) -> list[str]:
        """Cells defining the batch mates (not in ``seen``) whose classes ``cand``'s recorded
        arguments are instances of and ``cand`` does not define itself: a ``total(items)``
        that reads ``item.price`` never names ``Item``, but its calls' pickled ``Item``s load
        only where ``Item`` is defined (without it every call was unreplayable, and the
        function admitted ``unverified``). Each defined mate offers its classes to the cell."""
        needed = main_classes(cand.probes) - {c for g in cand.globals for c in class_names(g)}
        out: list[str] = []
        for mate in self.batch.values():
            if not needed or mate.name in seen:
                continue
            offers = {c for g in mate.globals for c in class_names(g)} & needed
            if offers:
                seen.add(mate.name)
                needed -= offers
                out.append(self.isolated(mate))
        return out

    def depends_of(self, cand: Candidate) -> list[str]:
        """The functions ``cand`` calls that another candidate of the task or the library
        provides: stored as its ``depends_on``, defined before it."""
        return [
            c
            for c in cand.calls
            if c != cand.name and (c in self.batch or self.library.get_by_name(c))
        ]

    def isolated(self, cand: Candidate) -> str:
        """A cell that defines ``cand`` as a later task's kernel will define it once stored: in a
        namespace of its own, with only its imports, its module-level names and the functions
        it depends on. So a check passes only for what the library will run: a function that
        read another candidate's ``RATE``, or an import only a batch mate made, fails here as
        it would in the next task, not after it was stored."""
        return define_code([(cand.name, cand.source(), self.depends_of(cand))], install=False)

    # -- writes ---------------------------------------------------------------------------------
    def store(
        self,
        cand: Candidate,
        *,
        version: int = 1,
        supersedes: str | None = None,
        quarantined: str | None = None,
    ) -> FunctionRecord:
        """Add ``cand`` to the library; it depends on the functions it calls that the task or
        the library provides. With ``quarantined`` (the reason) it is stored quarantined in the
        same write, so it is never active for a moment."""
        record = to_record(
            cand,
            self.origin,
            depends_on=self.depends_of(cand),
            last_used_task=self.task_index or 0,
            version=version,
            supersedes=supersedes,
        )
        if quarantined is not None:
            record.status, record.status_reason = "quarantined", quarantined
        return self.library.add(record)

    def count_use(self, record: FunctionRecord) -> None:
        if self.count_uses:
            self.library.record_use(record.id, success=True, task_index=self.task_index)

    def add_alias(self, record: FunctionRecord, names: Iterable[str]) -> None:
        """Make ``names`` resolve to (and be defined with) ``record``; no write if nothing new."""
        new = [n for n in names if n != record.name and n not in record.aliases]
        if new:
            record.aliases = [*record.aliases, *dict.fromkeys(new)]
            self.library.add(record)

    def supersede(
        self, old: FunctionRecord, cand: Candidate, why: str, *, keep_old_names: bool = True
    ) -> FunctionRecord:
        """Store ``cand`` in place of ``old`` (another name) and archive ``old``; with
        ``keep_old_names`` its name and aliases stay callable as aliases of the new record."""
        if keep_old_names:
            cand.aliases = [*cand.aliases, old.name, *old.aliases]
        record = self.store(cand, supersedes=old.id)
        reason = f"superseded by {cand.name} ({record.id}): {why}"
        self.library.set_status(old.id, "archived", reason)
        return record


def isolated_source(record: FunctionRecord) -> str:
    """A cell that defines a library function as a task's kernel does: in a namespace of its
    own (tools/kernel/definitions.py), so that a check sees the function its recorded calls
    used, whatever module-level names the function checked sets. For the scratch kernel, which
    has the definition helper in its baseline (tools/librarian/scratch.py)."""
    return define_code([(record.name, record.kernel_source(), record.depends_on)], install=False)


class Stage(Protocol):
    """One step of the cascade: a final :class:`Decision`, a :class:`Restart` with another
    candidate, or None to let the next stage decide."""

    name: str

    def decide(self, candidate: Candidate, ctx: AdmissionContext) -> Decision | Restart | None: ...
