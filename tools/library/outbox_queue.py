"""The outbox's queue: pending changes in one local SQLite file, sent in order, once."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dynagraph.tools.errors import EndpointError
from dynagraph.tools.library.base import (
    FunctionRecord,
    LibraryError,
    utc_now,
)
from dynagraph.tools.library.sqlite_atomic import connect, transaction


class LibraryUnavailableError(LibraryError, EndpointError):
    """The library's server cannot be reached (connection refused, timeout, 502/503/504).

    An :class:`~dynagraph.tools.errors.EndpointError` too: the command line exits with 2.

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
    # the journal, which the primary keeps for every machine (weaviate_ledger.py)
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
            self._conn = connect(self.path, busy_timeout_s)
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

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(self._conn, self._lock)

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
