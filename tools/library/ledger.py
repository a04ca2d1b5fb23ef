"""The librarian's journal in SQL: the task counter and the decision log, as functions of a
connection that SqliteLibrary calls inside its own transactions (its tables are in
``sqlite_schema``). :func:`decision_rows` also validates the entries the Weaviate journal
(``weaviate_ledger``) and the outbox take.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from dynagraph.tools.library.base import LibraryError


def now_us() -> str:
    """UTC now with microseconds, in a form that sorts as text (the Weaviate journal's time)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def new_ids(n: int) -> list[str]:
    """Fresh uuids for journal objects, fixed before the first try (an idempotent replay)."""
    return [str(uuid.uuid4()) for _ in range(n)]


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
