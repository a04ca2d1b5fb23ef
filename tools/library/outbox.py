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
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dynagraph.tools.library.base import (
    FunctionLibrary,
    FunctionRecord,
    LibraryError,
    SearchHit,
    utc_now,
)
from dynagraph.tools.library.ledger import LocalLedger, decision_rows


class LibraryUnavailableError(LibraryError):
    """The library's server cannot be reached (connection refused, timeout, 502/503/504).

    Only this error sends a write to the outbox: any other :class:`LibraryError` means the
    server answered and refused, and queueing would only postpone the same refusal.
    """


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS pending (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: never reused, so order holds
        op TEXT NOT NULL,
        payload TEXT NOT NULL,
        queued_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS rejected (
        seq INTEGER PRIMARY KEY,
        op TEXT NOT NULL,
        payload TEXT NOT NULL,
        queued_at TEXT NOT NULL,
        error TEXT NOT NULL,
        rejected_at TEXT NOT NULL
    )""",
)

#: The operations an outbox can hold: writes the agent makes during a task.
OPS: tuple[str, ...] = (
    "add",
    "record_use",
    "record_retrieved",
    "set_status",
    "mark_used",
    # the journal of a primary that keeps it itself (Weaviate: ``shared_ledger``)
    "count_task",
    "log_decisions",
)


@dataclass
class FlushReport:
    """What one :meth:`OutboxLibrary.flush` did; ``summary()`` is the line the CLI prints."""

    sent: int = 0
    remaining: int = 0
    rejected: list[str] = field(default_factory=list)
    stopped_by: str | None = None

    @property
    def complete(self) -> bool:
        return self.remaining == 0 and not self.rejected

    def summary(self) -> str:
        text = f"outbox: sent {self.sent} queued change(s), {self.remaining} left"
        if self.rejected:
            text += f", {len(self.rejected)} rejected by the server (kept in the outbox file)"
        if self.stopped_by:
            text += f"; stopped: {self.stopped_by}"
        return text


class Outbox:
    """The queue itself: one SQLite file, every change in its own transaction.

    ``target`` names where the queued changes go (server, collection, tenant). An outbox
    holding changes for another target refuses to open: flushing them into the wrong
    collection would be worse than keeping them.
    """

    def __init__(
        self, path: str | Path, *, target: str | None = None, busy_timeout_s: float = 30.0
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._conn = sqlite3.connect(
                self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            for statement in _SCHEMA:
                self._conn.execute(statement)
            if target is not None:
                self._claim(target)
        except sqlite3.DatabaseError as exc:
            self.close()
            raise LibraryError(f"cannot open the library outbox {self.path}: {exc}") from exc
        except LibraryError:
            self.close()
            raise

    def _claim(self, target: str) -> None:
        with self._transaction() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'target'").fetchone()
            (pending,) = conn.execute("SELECT COUNT(*) FROM pending").fetchone()
            if row is not None and row[0] != target and pending:
                raise LibraryError(
                    f"the outbox {self.path} holds {pending} change(s) for {row[0]}, not for "
                    f"{target}: run `dynagraph library sync` with that config first, or set "
                    "library.outbox_path"
                )
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('target', ?)", (target,))

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def append(self, op: str, payload: dict[str, Any]) -> None:
        if op not in OPS:
            raise ValueError(f"unknown outbox operation {op!r}")
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO pending (op, payload, queued_at) VALUES (?, ?, ?)",
                (op, json.dumps(payload, ensure_ascii=False, sort_keys=True), utc_now()),
            )

    def count(self) -> int:
        with self._lock:
            (n,) = self._conn.execute("SELECT COUNT(*) FROM pending").fetchone()
        return int(n)

    def pending(self) -> list[tuple[int, str, dict[str, Any]]]:
        """Every queued change, oldest first: (seq, op, payload)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, op, payload FROM pending ORDER BY seq"
            ).fetchall()
        return [(int(seq), op, json.loads(payload)) for seq, op, payload in rows]

    def rejected(self) -> list[tuple[int, str, str]]:
        """Changes the server refused: (seq, op, error). Kept for a human to look at."""
        with self._lock:
            rows = self._conn.execute("SELECT seq, op, error FROM rejected ORDER BY seq")
            return [(int(s), op, err) for s, op, err in rows.fetchall()]

    def queued_records(self) -> list[FunctionRecord]:
        """The records of queued adds, oldest first (a later add of one id wins)."""
        latest: dict[str, FunctionRecord] = {}
        for _, op, payload in self.pending():
            if op == "add":
                record = FunctionRecord.from_dict(payload)
                latest.pop(record.id, None)
                latest[record.id] = record
        return list(latest.values())

    def drain(self, send: Callable[[str, dict[str, Any]], None]) -> FlushReport:
        """Send queued changes in order until the queue is empty or the server is unreachable.

        Each change is sent while this process holds the outbox's write lock and deleted in
        the same transaction, so concurrent drains (two processes) never send one twice.
        """
        report = FlushReport()
        while True:
            with self._transaction() as conn:
                row = conn.execute(
                    "SELECT seq, op, payload, queued_at FROM pending ORDER BY seq LIMIT 1"
                ).fetchone()
                if row is None:
                    break
                seq, op, payload, queued_at = row
                try:
                    send(op, json.loads(payload))
                except LibraryUnavailableError as exc:
                    report.stopped_by = str(exc)
                    break
                except LibraryError as exc:
                    conn.execute(
                        "INSERT OR REPLACE INTO rejected VALUES (?, ?, ?, ?, ?, ?)",
                        (seq, op, payload, queued_at, str(exc), utc_now()),
                    )
                    report.rejected.append(f"{op} #{seq}: {exc}")
                else:
                    report.sent += 1
                conn.execute("DELETE FROM pending WHERE seq = ?", (seq,))
        report.remaining = self.count()
        return report

    def close(self) -> None:
        conn = getattr(self, "_conn", None)
        if conn is not None:
            with self._lock:
                conn.close()


class OutboxLibrary:
    """A :class:`FunctionLibrary` that queues writes locally while its primary is unreachable.

    ``primary`` is the real library (Weaviate); ``outbox_path`` the local SQLite file;
    ``target`` names the primary's server and collection (see :class:`Outbox`). Order
    is kept: while anything is queued, a new write first tries to flush the queue and is
    queued behind it if the server is still down. With ``flush_on_open`` (the default) the
    queue left by an earlier run is flushed here, best effort: the report is in
    :attr:`last_flush`.
    """

    def __init__(
        self,
        primary: FunctionLibrary,
        outbox_path: str | Path,
        *,
        target: str | None = None,
        flush_on_open: bool = True,
    ) -> None:
        self.primary = primary
        self.outbox = Outbox(outbox_path, target=target)
        # The task counter and decision log: in the primary when it keeps them for every
        # machine (Weaviate), their writes queued here like any other; else a local ledger.
        self.shared_ledger = bool(getattr(primary, "shared_ledger", False))
        self.ledger = (
            None if self.shared_ledger else LocalLedger(Path(outbox_path).with_suffix(".ledger.db"))
        )
        self._last_task_index = 0
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

    def pending_count(self) -> int:
        return self.outbox.count()

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

    # -- the journal (shared in the primary, or the local ledger) ------------------------------
    def next_task_index(self) -> int:
        """With a shared ledger, the task is recorded in the server (its id and time fixed
        now, so a replay is idempotent); while the server is down it is queued and the index
        is an estimate: the last index seen plus the tasks queued since."""
        if self.ledger is not None:
            return self.ledger.next_task_index()
        from dynagraph.tools.library.weaviate_ledger import now_us

        payload = {"at": now_us(), "task_id": str(uuid.uuid4())}
        sent, index = self._write("count_task", payload)
        if sent:
            return int(index)
        queued = sum(op == "count_task" for _, op, _ in self.outbox.pending())
        return self._last_task_index + queued

    def task_index(self) -> int:
        if self.ledger is not None:
            return self.ledger.task_index()
        self._flush_if_pending()
        index = int(self.primary.task_index())
        self._last_task_index = max(self._last_task_index, index)
        return index

    def log_decisions(self, entries: Iterable[dict[str, Any]]) -> None:
        if self.ledger is not None:
            self.ledger.log_decisions(entries)
            return
        from dynagraph.tools.library.weaviate_ledger import new_ids, now_us

        rows = list(entries)
        decision_rows(rows)  # a bad entry is refused now, not queued to be rejected later
        if rows:
            payload = {"entries": rows, "at": now_us(), "ids": new_ids(len(rows))}
            self._write("log_decisions", json.loads(json.dumps(payload, default=str)))

    def decision_log(self, *, limit: int = 100, name: str | None = None) -> list[dict[str, Any]]:
        if self.ledger is not None:
            return self.ledger.decision_log(limit=limit, name=name)
        self._flush_if_pending()
        return self.primary.decision_log(limit=limit, name=name)

    # -- reads ---------------------------------------------------------------------------------
    def _read_or_queued(
        self, read: Callable[[], FunctionRecord | None], match: Callable[[FunctionRecord], bool]
    ) -> FunctionRecord | None:
        """A key lookup; while the server is down, answered from the queued adds if one
        matches (else the unavailability is raised: 'not found' would be a guess)."""
        try:
            self._flush_if_pending()
            return read()
        except LibraryUnavailableError:
            queued = [r for r in self.outbox.queued_records() if match(r)]
            if queued:
                return max(queued, key=lambda r: (r.version, r.created_at))
            raise

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
        self._flush_if_pending()
        return self.primary.versions(name)

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

    def nearest(self, text: str, k: int = 5, *, status: str | None = "active") -> list[SearchHit]:
        self._flush_if_pending()
        return self.primary.nearest(text, k, status=status)

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
            if self.ledger is not None:
                self.ledger.close()

    def __enter__(self) -> OutboxLibrary:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
