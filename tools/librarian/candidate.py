"""The one shape of a function on its way into the library: :class:`Candidate`.

A function is extracted from a successful cell (``codeparse.ExtractedFunction``), becomes a
candidate with the calls recorded to it (:meth:`Candidate.from_function`), travels in the
graph's state as a plain dict (:meth:`Candidate.to_entry` / :meth:`Candidate.from_entry`: state
stays serializable) and, once admitted, is stored as a ``FunctionRecord`` (:func:`to_record`).
No other code copies these fields by hand.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from dynagraph.tools.codeparse import ExtractedFunction, doc_view
from dynagraph.tools.library import FunctionRecord

__all__ = ["Candidate", "Origin", "merge_task_candidates", "to_record"]

#: What a function is, with the same names in ExtractedFunction, Candidate and FunctionRecord.
_FUNCTION_FIELDS = ("name", "code", "ast_hash", "signature", "docstring", "imports", "globals")
#: The fields a state entry carries; the others are the librarian's notes while it judges.
_ENTRY_FIELDS = (*_FUNCTION_FIELDS, "calls", "probes", "step")


def _function_fields(source: object) -> dict[str, Any]:
    """The function fields of ``source``, lists copied (the new object owns its own)."""
    out = {}
    for key in _FUNCTION_FIELDS:
        value = getattr(source, key)
        out[key] = list(value) if isinstance(value, list) else value
    return out


@dataclass
class Origin:
    """Where the candidates of one admission come from (stamped on the records and the log)."""

    task: str = ""
    thread: str = ""
    model: str = ""
    tags: list[str] = field(default_factory=list)


@dataclass
class Candidate:
    """A function from a successful cell (or a person's file), ready to be judged."""

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
        cls, fn: ExtractedFunction, probes: Iterable[dict[str, Any]] = (), step: int = 0
    ) -> Candidate:
        """A candidate from what codeparse extracted, with the calls recorded to it."""
        return cls(**_function_fields(fn), calls=list(fn.calls), probes=list(probes), step=step)

    def to_entry(self) -> dict[str, Any]:
        """The candidate as the executor puts it in the graph's state (plain JSON types)."""
        data = asdict(self)
        return {key: data[key] for key in _ENTRY_FIELDS}

    @classmethod
    def from_entry(cls, entry: dict[str, Any]) -> Candidate:
        """Back from a state entry (unknown keys, from older checkpoints, are ignored)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in entry.items() if k in known})

    def source(self) -> str:
        """What defines it in a kernel: imports, globals, then the code."""
        parts = [*self.imports, *self.globals, self.code]
        return "\n".join(p for p in parts if p.strip()) + "\n"

    def doc_view(self) -> str:
        """The text its nearest neighbours are found by (codeparse.doc_view)."""
        return doc_view(self.name, self.signature, self.docstring)

    def reason(self, base: str) -> str:
        """A decision's reason: what decided, then what the checks on the way found."""
        return "; ".join([base, *self.checks])


def merge_task_candidates(entries: Iterable[dict[str, Any]]) -> list[Candidate]:
    """One candidate per name from a task's state entries: the last definition, with every
    probe recorded after it (``probes_only`` entries: calls made in a later cell)."""
    latest: dict[str, Candidate] = {}
    for entry in entries:
        if entry.get("probes_only"):
            if entry["name"] in latest:
                latest[entry["name"]].probes.extend(entry.get("probes", []))
            continue
        cand = Candidate.from_entry(entry)
        latest[cand.name] = cand  # a redefinition keeps the name's first place
    return list(latest.values())


def to_record(
    cand: Candidate,
    origin: Origin,
    *,
    depends_on: Iterable[str] = (),
    last_used_task: int = 0,
    version: int = 1,
    supersedes: str | None = None,
) -> FunctionRecord:
    """The library record of an admitted candidate."""
    return FunctionRecord(
        **_function_fields(cand),
        depends_on=sorted(set(depends_on) - {cand.name}),
        origin_task=origin.task,
        origin_thread=origin.thread,
        origin_model=origin.model,
        probes=list(cand.probes),
        tags=list(dict.fromkeys([*origin.tags, *cand.tags])),
        aliases=[a for a in dict.fromkeys(cand.aliases) if a != cand.name],
        version=version,
        supersedes=supersedes,
        last_used_task=last_used_task,
    )
