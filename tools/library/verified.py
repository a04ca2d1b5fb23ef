"""Reads that check integrity: a mixin any backend class takes in front of its own class.

``class VerifiedSqliteLibrary(VerifiedReads, SqliteLibrary)`` is what ``open_library`` builds:
every read (get, get_by_name, versions, find_by_hash, list, search, nearest) drops the records
that fail :func:`tools.library.integrity.record_problem` (and ``add`` refuses to store one), so such a record is never shown to the
coder nor defined in a kernel (the executor re-reads the hits by id). ``list_unverified`` is
the one unfiltered read, for ``library check``; ``stats`` counts the failing records.

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
        stats = dict(super().stats())  # type: ignore[misc]
        stats["tampered"] = sum(1 for r in self.list_unverified() if record_problem(r))
        return stats
