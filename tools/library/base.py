"""The function library's record type and the protocol every backend implements.

A backend stores :class:`FunctionRecord` objects with their embedding vectors and answers
hybrid (vector + keyword) searches over them. The protocol is deliberately small so that the
SQLite default and the Weaviate backend can be run through one contract test suite
(``tests/contract/library_contract.py``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from dynagraph.tools.errors import DynagraphError, EnvironmentProblem, InputError

Status = Literal["active", "archived", "quarantined"]
STATUSES: tuple[str, ...] = ("active", "archived", "quarantined")

#: Namespace for deterministic record ids: uuid5(NAMESPACE, ast_hash).
RECORD_NAMESPACE = uuid.UUID("6f1c2d4e-8a0b-5c3d-9e7f-1a2b3c4d5e6f")


class LibraryError(DynagraphError):
    """A library operation failed; the message is one line a user can act on."""


class LibraryUnavailable(LibraryError, EnvironmentProblem):
    """The library's file cannot be opened or made where the settings put it (exit 2, as any
    unusable path)."""


def record_id_for(ast_hash: str) -> str:
    """The deterministic id of a function: uuid5 of its normalized-AST hash.

    The same normalized code always maps to the same id in every backend, which is what makes
    imports idempotent and lets Weaviate use the id as its object uuid.
    """
    return str(uuid.uuid5(RECORD_NAMESPACE, ast_hash))


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


#: Weight of the origin-task view in a record's vector score (the doc view has the rest); both
#: backends use it, so they rank alike.
TASK_VIEW_WEIGHT = 0.5


@dataclass
class FunctionRecord:
    """One function in the library, with everything needed to define it in a fresh kernel.

    ``code`` is the function's own source (decorators included); ``imports`` are the import
    statements it needs, exactly as written (aliases kept); ``globals`` are module-level
    statements it reads (constants, helper assignments). ``depends_on`` names other library
    functions it calls, which the executor defines first.
    """

    name: str
    code: str
    ast_hash: str
    signature: str = ""
    docstring: str = ""
    imports: list[str] = field(default_factory=list)
    globals: list[str] = field(default_factory=list)
    depends_on: list[str] = field(default_factory=list)
    origin_task: str = ""
    origin_thread: str = ""
    origin_model: str = ""
    probes: list[dict[str, Any]] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    version: int = 1
    uses: int = 0
    retrieved: int = 0
    successes: int = 0
    status: str = "active"
    status_reason: str = ""
    supersedes: str | None = None
    created_at: str = field(default_factory=utc_now)
    last_used_task: int = 0
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            self.id = record_id_for(self.ast_hash)
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {self.status!r}")

    # -- views -------------------------------------------------------------------------------
    def summary_line(self) -> str:
        """How the coder sees a function: ``name(signature) -> type: docstring [capabilities]``
        (the docstring's first line; the capability tags when it has any)."""
        doc = self.docstring.strip().splitlines()[0] if self.docstring.strip() else ""
        line = f"{self.name}{self.signature}: {doc}" if doc else f"{self.name}{self.signature}"
        caps = self.capabilities
        return f"{line} [{', '.join(caps)}]" if caps else line

    @property
    def capabilities(self) -> list[str]:
        """What the function can do to the world (tools/capabilities.py): the tags the librarian
        stored (they include those of the functions it calls) plus what its code and imports
        show now, so a tag removed behind the library's back still shows."""
        from dynagraph.tools.capabilities import CAPABILITIES, capabilities_of

        found = {*self.tags, *capabilities_of(self.code, self.imports)}
        return [c for c in CAPABILITIES if c in found]

    def doc_view(self) -> str:
        """Text embedded for the docstring view (codeparse.doc_view)."""
        from dynagraph.tools.codeparse import doc_view

        return doc_view(self.name, self.signature, self.docstring)

    def task_view(self) -> str:
        """Text embedded for the origin-task view (the task that made the function)."""
        return self.origin_task.strip()

    def keyword_text(self) -> str:
        """Text indexed for keyword search: identifiers split on underscores, plus docstring."""
        words = self.name.replace("_", " ")
        return f"{self.name} {words} {self.signature} {self.docstring} {self.origin_task}"

    def kernel_source(self) -> str:
        """Source that defines the function in a kernel: imports, globals, the code, then one
        ``alias = name`` line per alias, so that a name this function superseded stays
        callable (the librarian aliases a name only when its recorded calls pass through
        this function)."""
        parts = [*self.imports, *self.globals, self.code]
        parts += [f"{alias} = {self.name}" for alias in self.callable_aliases()]
        return "\n".join(p for p in parts if p.strip()) + "\n"

    def callable_aliases(self) -> list[str]:
        """Aliases that can be bound in a kernel: identifiers other than the name itself that
        rebind no keyword or builtin (an alias ``open`` would replace the cell's ``open``)."""
        from dynagraph.tools.library.integrity import reserved_name

        return [
            a
            for a in dict.fromkeys(self.aliases)
            if a != self.name and a.isidentifier() and not reserved_name(a)
        ]

    # -- serialization -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FunctionRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False)


def newest(records: Iterable[FunctionRecord]) -> FunctionRecord | None:
    """The record a name (or hash) stands for: the highest version, then the latest created;
    of equal ones the last given (records arrive oldest first, as SQLite's ``seq`` orders
    them), so every backend and the outbox pick the same one."""
    best: FunctionRecord | None = None
    for record in records:
        if best is None or (record.version, record.created_at) >= (best.version, best.created_at):
            best = record
    return best


@dataclass
class SearchHit:
    """A search result: the record and a fused score (higher is better)."""

    record: FunctionRecord
    score: float
    vector_score: float = 0.0
    keyword_score: float = 0.0


@runtime_checkable
class FunctionLibrary(Protocol):
    """What every backend offers. Vectors are computed by the backend's embedder.

    ``search`` is hybrid: vector similarity over the docstring and origin-task views fused with
    keyword (BM25) matching. Only ``active`` records are returned unless ``status`` is given.
    """

    embedder_name: str

    def add(self, record: FunctionRecord) -> FunctionRecord:
        """Insert or replace (upsert by id) a record atomically; returns the stored record."""
        ...

    def get(self, record_id: str) -> FunctionRecord | None: ...

    def get_by_name(self, name: str, *, include_inactive: bool = False) -> FunctionRecord | None:
        """The newest active version with this name (or alias)."""
        ...

    def versions(self, name: str) -> list[FunctionRecord]:
        """Every version with this name, oldest first."""
        ...

    def find_by_hash(self, ast_hash: str) -> FunctionRecord | None: ...

    def search(
        self,
        query: str,
        k: int = 5,
        *,
        status: str | None = "active",
        tags: Iterable[str] | None = None,
        alpha: float = 0.5,
    ) -> list[SearchHit]:
        """Hybrid search; ``alpha`` weighs vectors (1.0) against keywords (0.0)."""
        ...

    def prepare_search(self, *queries: str) -> None:
        """Start what later ``search(query)`` calls need (the queries' vectors) in the background
        and return at once, the first query first: the coder asks it for the steps likely to
        come next. Only a hint."""
        ...

    def nearest(self, text: str, k: int = 5, *, status: str | None = "active") -> list[SearchHit]:
        """Nearest neighbours by the docstring-view vector only (for dedup)."""
        ...

    def record_use(
        self, record_id: str, *, success: bool, task_index: int | None = None
    ) -> None: ...

    def record_retrieved(self, record_ids: Iterable[str]) -> None: ...

    def set_status(self, record_id: str, status: str, reason: str = "") -> None: ...

    def list(self, *, status: str | None = None) -> list[FunctionRecord]: ...

    def stats(self) -> dict[str, Any]: ...

    # -- the librarian's journal: a task counter (for pruning) and its decision log ----------
    def next_task_index(self) -> int:
        """Count one more task in this library and return its index (1, 2, ...). Atomic: two
        processes finishing tasks at once get different indexes."""
        ...

    def task_index(self) -> int:
        """How many tasks have been counted (0 for a new library)."""
        ...

    def mark_used(self, record_ids: Iterable[str], task_index: int) -> None:
        """Raise ``last_used_task`` to ``task_index`` (never lower it) without counting a use.
        Unknown ids are ignored."""
        ...

    def log_decisions(self, entries: Iterable[dict[str, Any]]) -> None:
        """Append librarian decisions (JSON objects with at least ``name`` and ``action``;
        ``target`` when the decision names another function) to the library's log."""
        ...

    def decision_log(self, *, limit: int = 100, name: str | None = None) -> list[dict[str, Any]]:
        """The last ``limit`` decisions, oldest first; with ``name``, only those whose
        ``name`` or ``target`` is that name."""
        ...

    def thread_decisions(self, thread: str) -> list[dict[str, Any]]:
        """Every decision logged by the task thread ``thread``, oldest first (a resumed task's
        librarian skips what it already decided)."""
        ...

    def close(self) -> None: ...


def archive(library: FunctionLibrary, record_id: str, reason: str = "") -> None:
    """Archive a record: kept, never retrieved, restorable with ``set_status(..., 'active')``."""
    library.set_status(record_id, "archived", reason)


def export_jsonl(library: FunctionLibrary, path: str | Path) -> int:
    """Write every record (any status) as JSON Lines; returns the count. Vectors are not
    exported: they are recomputed on import, so a file moves between embedders safely.

    The file appears whole or not at all: the records go to ``PATH.tmp`` first, renamed over
    ``path`` at the end and removed on any failure. A path that cannot be written (a folder, a
    missing folder, no permission) raises :class:`InputError` naming it."""
    target = Path(path)
    if target.is_dir():
        raise InputError(
            f"cannot export to {target}: it is a folder; give a file path, "
            f"e.g. {target / 'library.jsonl'}"
        )
    if not target.parent.is_dir():
        raise InputError(
            f"cannot export to {target}: the folder {target.parent} does not exist; "
            "create it or choose another path"
        )
    records = library.list(status=None)
    tmp = Path(str(target) + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            for record in sorted(records, key=lambda r: (r.created_at, r.id)):
                fh.write(record.to_json() + "\n")
        tmp.replace(target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise InputError(
                f"cannot export to {target}: {exc.strerror or exc}; choose a writable file path"
            ) from exc
        raise
    return len(records)
