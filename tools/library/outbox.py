"""A local outbox in front of a networked library: nothing is lost while the server is down.

When the server behind a :class:`~tools.library.base.FunctionLibrary` (Weaviate) cannot be
reached, the *writes* the agent makes (admitted functions, use counters, status changes) are
appended to one local SQLite file instead of failing the run, and :meth:`OutboxLibrary.flush`
replays them in order when the server answers again: at the next write, at the next open, or
from ``dynagraph library sync``.

Delivery: every change is sent once and removed from the outbox in the transaction that holds
the outbox's write lock while it is sent, so two processes flushing one outbox never send a
change twice. The one window left is a crash after the server acknowledged a change and before
the local commit: that change is sent again at the next flush. Adds are idempotent upserts (the
same id replaces itself), so only a counter could then count one use twice.

Reads are not queued: a search needs the server. ``get``, ``get_by_name`` and ``find_by_hash``
also look at the queued adds when the server is down, so the librarian does not admit the same
function twice in one outage.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from dynagraph.tools.library.base import (
    FunctionLibrary,
    FunctionRecord,
    LibraryError,
    SearchHit,
    newest,
)
from dynagraph.tools.library.ledger import decision_rows, new_ids, now_us
from dynagraph.tools.library.outbox_queue import OPS, FlushReport, LibraryUnavailableError, Outbox
from dynagraph.tools.library.verified import VerifiedReads

T = TypeVar("T")

__all__ = ["OPS", "FlushReport", "LibraryUnavailableError", "Outbox", "OutboxLibrary"]


class OutboxLibrary:
    """A :class:`FunctionLibrary` that queues writes locally while its primary is unreachable.

    ``primary`` is the real library (Weaviate); ``outbox_path`` the local SQLite file;
    ``target`` names the primary's server and collection (see :class:`Outbox`). Order
    is kept: while anything is queued, a new write first tries to flush the queue and is
    queued behind it if the server is still down. With ``flush_on_open`` (the default) the
    queue left by an earlier run is flushed here, best effort: the report is in
    :attr:`last_flush`.

    ``admit_offline`` (what a run uses, see ``open_weaviate_library``): while the server is
    away the librarian keeps admitting, judging against the queued adds only: a lookup that
    finds nothing queued answers "not there" (``None``, no versions, no near neighbour)
    instead of raising. That guess is safe because the queued writes are idempotent: the same
    code has the same id (an upsert, never a second copy), and two versions of one name that
    both claimed the same number are renumbered by the primary's settle rule when the queue is
    sent (``WeaviateLibrary.settle_versions``). Searches still need the server.
    """

    def __init__(
        self,
        primary: FunctionLibrary,
        outbox_path: str | Path,
        *,
        target: str | None = None,
        flush_on_open: bool = True,
        admit_offline: bool = False,
    ) -> None:
        self.primary = primary
        self.admit_offline = admit_offline
        self.outbox = Outbox(outbox_path, target=target)
        self._last_task_index = 0  # the last task index the primary answered
        self.embedder_name: str = primary.embedder_name
        self._lock = threading.RLock()
        self.last_flush: FlushReport | None = None
        if flush_on_open:
            try:
                self.flush()
            except BaseException:
                self.outbox.close()
                raise

    # -- the queue -----------------------------------------------------------------------------
    def flush(self) -> FlushReport:
        """Send every queued change, in order; stops (without raising) when the server is
        unreachable. Changes the server refuses are moved to the outbox's ``rejected`` table."""
        with self._lock:
            self.last_flush = self.outbox.drain(self._apply)
        return self.last_flush

    def _apply(self, op: str, payload: dict[str, Any]) -> Any:
        if op == "add":
            return self.primary.add(FunctionRecord.from_dict(payload))
        if op == "record_use":
            self.primary.record_use(
                payload["record_id"], success=payload["success"], task_index=payload["task_index"]
            )
        elif op == "record_retrieved":
            self.primary.record_retrieved(payload["record_ids"])
        elif op == "mark_used":
            self.primary.mark_used(payload["record_ids"], payload["task_index"])
        elif op == "set_status":
            self.primary.set_status(payload["record_id"], payload["status"], payload["reason"])
        elif op == "count_task":
            index = self.primary.next_task_index(at=payload["at"], task_id=payload["task_id"])  # type: ignore[call-arg]
            self._last_task_index = max(self._last_task_index, int(index))
            return index
        elif op == "log_decisions":
            self.primary.log_decisions(  # type: ignore[call-arg]
                payload["entries"], at=payload["at"], ids=payload["ids"]
            )
        else:  # pragma: no cover - append() refuses unknown ops
            raise LibraryError(f"unknown outbox operation {op!r}")
        return None

    def _write(self, op: str, payload: dict[str, Any]) -> tuple[bool, Any]:
        """Send one change, or queue it: (reached the server now, what the primary returned)."""
        with self._lock:
            if self.outbox.count():
                self.flush()
                if self.outbox.count():
                    self.outbox.append(op, payload)
                    return False, None
            try:
                result = self._apply(op, payload)
            except LibraryUnavailableError:
                self.outbox.append(op, payload)
                return False, None
            return True, result

    def _flush_if_pending(self) -> None:
        if self.outbox.count():
            self.flush()

    # -- writes --------------------------------------------------------------------------------
    def add(self, record: FunctionRecord) -> FunctionRecord:
        """Upsert on the server, or queue it (the record is returned either way)."""
        payload = record.to_dict()
        sent, stored = self._write("add", payload)
        return stored if sent else FunctionRecord.from_dict(payload)

    def record_use(self, record_id: str, *, success: bool, task_index: int | None = None) -> None:
        self._write(
            "record_use", {"record_id": record_id, "success": success, "task_index": task_index}
        )

    def record_retrieved(self, record_ids: Iterable[str]) -> None:
        ids = list(record_ids)
        if ids:
            self._write("record_retrieved", {"record_ids": ids})

    def set_status(self, record_id: str, status: str, reason: str = "") -> None:
        self._write("set_status", {"record_id": record_id, "status": status, "reason": reason})

    def mark_used(self, record_ids: Iterable[str], task_index: int) -> None:
        ids = list(dict.fromkeys(record_ids))
        if ids:
            self._write("mark_used", {"record_ids": ids, "task_index": int(task_index)})

    # -- the journal, kept in the primary for every machine (Weaviate: weaviate_ledger.py) ----
    def next_task_index(self) -> int:
        """The task is recorded in the server (its id and time fixed now, so a replay is
        idempotent); while the server is down it is queued and the index is an estimate: the
        last index seen plus the tasks queued since."""
        payload = {"at": now_us(), "task_id": str(uuid.uuid4())}
        sent, index = self._write("count_task", payload)
        if sent:
            return int(index)
        queued = sum(op == "count_task" for _, op, _ in self.outbox.pending())
        return self._last_task_index + queued

    def task_index(self) -> int:
        self._flush_if_pending()
        index = int(self.primary.task_index())
        self._last_task_index = max(self._last_task_index, index)
        return index

    def log_decisions(self, entries: Iterable[dict[str, Any]]) -> None:
        """Queued like any write; the ids and time are fixed now (an idempotent replay)."""
        rows = list(entries)
        decision_rows(rows)  # a bad entry is refused now, not queued to be rejected later
        if rows:
            payload = {"entries": rows, "at": now_us(), "ids": new_ids(len(rows))}
            self._write("log_decisions", json.loads(json.dumps(payload, default=str)))

    def decision_log(self, *, limit: int = 100, name: str | None = None) -> list[dict[str, Any]]:
        self._flush_if_pending()
        return self.primary.decision_log(limit=limit, name=name)

    def thread_decisions(self, thread: str) -> list[dict[str, Any]]:
        """What ``thread`` logged; while the server is away and admitting offline, what it
        queued here (what reached the server before is not known then: a resumed task may
        decide it again, which the idempotent writes make harmless)."""
        return self._server_or_guess(
            lambda: self.primary.thread_decisions(thread),
            lambda: [
                entry
                for _, op, payload in self.outbox.pending()
                if op == "log_decisions"
                for entry in payload["entries"]
                if entry.get("thread") == thread
            ],
        )

    # -- reads ---------------------------------------------------------------------------------
    def _server_or_guess(self, read: Callable[[], T], guess: Callable[[], T]) -> T:
        """``read()`` from the server (after sending what is queued); while it is away, the
        ``guess()`` made from the queue when admitting offline (see the class docstring),
        else the unavailability is raised."""
        try:
            self._flush_if_pending()
            return read()
        except LibraryUnavailableError as exc:
            return self._guess(exc, guess)

    def _guess(self, away: LibraryUnavailableError, guess: Callable[[], T]) -> T:
        if not self.admit_offline:
            raise away
        return guess()

    def _read_or_queued(
        self, read: Callable[[], FunctionRecord | None], match: Callable[[FunctionRecord], bool]
    ) -> FunctionRecord | None:
        """A key lookup; while the server is down, answered from the queued adds if one
        matches (that is no guess); else as :meth:`_server_or_guess` ("not there")."""
        try:
            self._flush_if_pending()
            return read()
        except LibraryUnavailableError as exc:
            queued = [r for r in self.outbox.queued_records() if match(r)]
            if queued:
                return newest(queued)
            return self._guess(exc, lambda: None)

    def get(self, record_id: str) -> FunctionRecord | None:
        return self._read_or_queued(
            lambda: self.primary.get(record_id), lambda r: r.id == record_id
        )

    def get_by_name(self, name: str, *, include_inactive: bool = False) -> FunctionRecord | None:
        return self._read_or_queued(
            lambda: self.primary.get_by_name(name, include_inactive=include_inactive),
            lambda r: (
                (name == r.name or name in r.aliases) and (include_inactive or r.status == "active")
            ),
        )

    def find_by_hash(self, ast_hash: str) -> FunctionRecord | None:
        return self._read_or_queued(
            lambda: self.primary.find_by_hash(ast_hash), lambda r: r.ast_hash == ast_hash
        )

    def versions(self, name: str) -> list[FunctionRecord]:
        return self._server_or_guess(
            lambda: self.primary.versions(name),
            lambda: sorted(
                (r for r in self.outbox.queued_records() if r.name == name),
                key=lambda r: (r.version, r.created_at),
            ),
        )

    def search(
        self,
        query: str,
        k: int = 5,
        *,
        status: str | None = "active",
        tags: Iterable[str] | None = None,
        alpha: float = 0.5,
    ) -> list[SearchHit]:
        self._flush_if_pending()
        return self.primary.search(query, k, status=status, tags=tags, alpha=alpha)

    def prepare_search(self, *queries: str) -> None:
        self.primary.prepare_search(*queries)

    def nearest(self, text: str, k: int = 5, *, status: str | None = "active") -> list[SearchHit]:
        # no near neighbour is known while the server is away
        return self._server_or_guess(lambda: self.primary.nearest(text, k, status=status), list)

    def list(self, *, status: str | None = None) -> list[FunctionRecord]:
        self._flush_if_pending()
        return self.primary.list(status=status)

    def stats(self) -> dict[str, Any]:
        self._flush_if_pending()
        stats = dict(self.primary.stats())
        stats["outbox_pending"] = self.outbox.count()
        stats["outbox_rejected"] = len(self.outbox.rejected())
        stats["outbox_path"] = str(self.outbox.path)
        return stats

    def close(self) -> None:
        try:
            self.primary.close()
        finally:
            self.outbox.close()

    def __enter__(self) -> OutboxLibrary:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VerifiedOutboxLibrary(VerifiedReads, OutboxLibrary):
    """Reads skip records that fail their integrity check (tools/library/verified.py), queued
    ones included."""
