"""The librarian's journal: the task counter and the decision log.

The SQL lives here once, as functions of a connection, and serves two owners: SqliteLibrary
keeps the journal in its own file (inside its own transactions), and :class:`LocalLedger`
keeps it in a file next to the Weaviate outbox, where it is per-installation bookkeeping that
stays available while the server is down (pruning by "unused in the last N tasks" then counts
this installation's tasks).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dynagraph.tools.library.base import LibraryError

JOURNAL_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('tasks', '0');
CREATE TABLE IF NOT EXISTS decisions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    "name" TEXT NOT NULL, "action" TEXT NOT NULL, "target" TEXT, "entry" TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_name ON decisions("name");
CREATE INDEX IF NOT EXISTS decisions_target ON decisions("target");
"""


def bump_task_index(conn: sqlite3.Connection) -> int:
    """Add one to the task counter (call inside a write transaction); the new value."""
    (value,) = conn.execute(
        "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'tasks' "
        "RETURNING CAST(value AS INTEGER)"
    ).fetchone()
    return int(value)


def read_task_index(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'tasks'").fetchone()
    return int(row[0]) if row else 0


def decision_rows(entries: Iterable[dict[str, Any]]) -> list[tuple[str, str, str | None, str]]:
    """Validate every entry before anything is written (a log never gets half a batch)."""
    rows = []
    for entry in entries:
        if not entry.get("name") or not entry.get("action"):
            raise LibraryError(f"a decision needs a name and an action: {entry!r}")
        rows.append(
            (
                str(entry["name"]),
                str(entry["action"]),
                entry.get("target") or None,
                json.dumps(entry, ensure_ascii=False, default=str),
            )
        )
    return rows


def insert_decisions(
    conn: sqlite3.Connection, rows: list[tuple[str, str, str | None, str]]
) -> None:
    conn.executemany(
        'INSERT INTO decisions ("name", "action", "target", "entry") VALUES (?, ?, ?, ?)', rows
    )


def read_thread_decisions(conn: sqlite3.Connection, thread: str) -> list[dict[str, Any]]:
    """Every decision logged by ``thread`` (a resumed task's librarian skips what it decided)."""
    rows = conn.execute(
        """SELECT "entry" FROM decisions WHERE json_extract("entry", '$.thread') = ? """
        "ORDER BY seq",
        (thread,),
    ).fetchall()
    return [json.loads(row[0]) for row in rows]


def read_decisions(
    conn: sqlite3.Connection, *, limit: int = 100, name: str | None = None
) -> list[dict[str, Any]]:
    """The last ``limit`` decisions, oldest first; ``name`` matches name or target."""
    if limit <= 0:
        return []
    where, params = ("", ()) if name is None else ('WHERE "name" = ? OR "target" = ?', (name,) * 2)
    rows = conn.execute(
        f'SELECT "entry" FROM decisions {where} ORDER BY seq DESC LIMIT ?', (*params, int(limit))
    ).fetchall()
    return [json.loads(row[0]) for row in reversed(rows)]


class LocalLedger:
    """The journal in its own SQLite file (for backends that keep records remotely)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        with self._conn:
            self._conn.executescript(JOURNAL_SCHEMA)

    def next_task_index(self) -> int:
        with self._lock, self._conn:
            return bump_task_index(self._conn)

    def task_index(self) -> int:
        with self._lock:
            return read_task_index(self._conn)

    def log_decisions(self, entries: Iterable[dict[str, Any]]) -> None:
        rows = decision_rows(entries)
        if rows:
            with self._lock, self._conn:
                insert_decisions(self._conn, rows)

    def decision_log(self, *, limit: int = 100, name: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return read_decisions(self._conn, limit=limit, name=name)

    def thread_decisions(self, thread: str) -> list[dict[str, Any]]:
        with self._lock:
            return read_thread_decisions(self._conn, thread)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
