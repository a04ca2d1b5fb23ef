"""Reads that check integrity: a mixin any backend class takes in front of its own class.

``class VerifiedSqliteLibrary(VerifiedReads, SqliteLibrary)`` is what ``open_library`` builds:
every read (get, get_by_name, versions, find_by_hash, list, search, nearest) drops the records
that fail :func:`tools.library.integrity.record_problem` (and ``add`` refuses to store one), so such a record is never shown to the
coder nor defined in a kernel (the executor re-reads the hits by id). ``list_unverified`` is
the one unfiltered read, for ``library check``; ``refused`` lists the failing records with why
(``library list --all`` and ``show`` show them to a person, marked); ``stats`` counts them as
``tampered``, apart from ``by_status``.

Why a mixin over the backend instead of a filter inside it: the backends stay plain stores
that the contract suite tests as such, and the Weaviate backend gets the same filter with one
line (``class VerifiedWeaviateLibrary(VerifiedReads, WeaviateLibrary)``, and so does the
outbox in front of it: ``VerifiedOutboxLibrary``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dynagraph.tools.library.base import FunctionRecord, LibraryError, SearchHit, newest
from dynagraph.tools.library.integrity import intact, record_problem

__all__ = ["VerifiedReads"]

#: Extra hits asked of the backend per search, so a dropped record still leaves k.
_SPARE_HITS = 5


def _ok(record: FunctionRecord | None) -> FunctionRecord | None:
    return record if record is not None and record_problem(record) is None else None


def refused_records(library: Any, name: str | None = None) -> list[tuple[FunctionRecord, str]]:
    """The stored records ``library``'s reads refuse (tampered), each with why; with ``name``,
    those of that name. None from a library that does not verify its reads."""
    refused = getattr(library, "refused", None)
    return refused(name) if refused is not None else []


class VerifiedReads:
    """Put first in the bases of a ``FunctionLibrary`` class: its reads skip failing records."""

    def add(self, record: FunctionRecord) -> FunctionRecord:
        """Refuse to store what no read would return (a clear error, not a vanished record)."""
        problem = record_problem(record)
        if problem:
            raise LibraryError(f"function {record.name} refused: {problem}")
        return super().add(record)  # type: ignore[misc]

    def get(self, record_id: str) -> FunctionRecord | None:
        return _ok(super().get(record_id))  # type: ignore[misc]

    def find_by_hash(self, ast_hash: str) -> FunctionRecord | None:
        return _ok(super().find_by_hash(ast_hash))  # type: ignore[misc]

    def versions(self, name: str) -> list[FunctionRecord]:
        return intact(super().versions(name))  # type: ignore[misc]

    def get_by_name(self, name: str, *, include_inactive: bool = False) -> FunctionRecord | None:
        found = super().get_by_name(name, include_inactive=include_inactive)  # type: ignore[misc]
        if found is None or _ok(found) is not None:
            return found
        # the newest version failed its check: the newest one that passes (same rules)
        usable = [r for r in self.versions(name) if include_inactive or r.status == "active"]
        return newest(usable)

    def list(self, *, status: str | None = None) -> list[FunctionRecord]:
        return intact(super().list(status=status))  # type: ignore[misc]

    def list_unverified(self) -> list[FunctionRecord]:
        """Every record as stored, integrity unchecked (``library check`` reads this)."""
        return super().list(status=None)  # type: ignore[misc]

    def refused(self, name: str | None = None) -> list[tuple[FunctionRecord, str]]:
        """The stored records every other read drops, each with why (``record_problem``), oldest
        first; with ``name``, those of that name or alias (or with that id). For ``library list
        --all``, ``show``, ``restore`` and ``stats`` to tell a person about them, never to
        define, retrieve or export them."""
        if name is None:
            stored = self.list_unverified()
        else:
            stored = list(super().versions(name))  # type: ignore[misc]
            by_id = super().get(name)  # type: ignore[misc]
            if by_id is not None and all(r.id != by_id.id for r in stored):
                stored.append(by_id)
        return [(r, why) for r in stored if (why := record_problem(r))]

    def search(
        self,
        query: str,
        k: int = 5,
        *,
        status: str | None = "active",
        tags: Iterable[str] | None = None,
        alpha: float = 0.5,
    ) -> list[SearchHit]:
        if k <= 0:
            return []
        hits = super().search(  # type: ignore[misc]
            query, k + _SPARE_HITS, status=status, tags=tags, alpha=alpha
        )
        return [h for h in hits if _ok(h.record) is not None][:k]

    def nearest(self, text: str, k: int = 5, *, status: str | None = "active") -> list[SearchHit]:
        if k <= 0:
            return []
        hits = super().nearest(text, k + _SPARE_HITS, status=status)  # type: ignore[misc]
        return [h for h in hits if _ok(h.record) is not None][:k]

    def stats(self) -> dict[str, Any]:
        """The backend's counts with the refused records moved out of ``by_status`` (and
        ``functions``) into ``tampered``: every count then matches what ``list`` shows, and
        ``total`` (every stored record) is ``sum(by_status) + tampered``."""
        stats = dict(super().stats())  # type: ignore[misc]
        refused = self.refused()
        by_status = dict(stats.get("by_status", {}))
        for record, _ in refused:
            if by_status.get(record.status, 0) > 0:
                by_status[record.status] -= 1
        stats["by_status"] = by_status
        if "functions" in stats:
            stats["functions"] = by_status.get("active", 0)
        stats["tampered"] = len(refused)
        return stats
