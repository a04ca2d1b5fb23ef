"""Transactions of :class:`~tools.library.sqlite.SqliteLibrary`: one per write, or one per
``atomic()`` block, and the connection (read-write, or read-only when the file cannot be
written: every read then works and every write fails in one line). :func:`connect` and
:func:`transaction` are the plain ones, which the outbox's queue uses too."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dynagraph.tools.library.base import LibraryError


@contextmanager
def transaction(
    conn: sqlite3.Connection, lock: Any, mode: str = "IMMEDIATE"
) -> Iterator[sqlite3.Connection]:
    """One transaction on ``conn`` (opened with ``isolation_level=None``) under ``lock``:
    committed at the end of the block, rolled back on any exception."""
    with lock:
        conn.execute(f"BEGIN {mode}")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def connect(path: Path, busy_timeout_s: float, *, read_only: bool = False) -> sqlite3.Connection:
    """A connection for :func:`transaction` (autocommit off: ``isolation_level=None``), shared
    by threads, waiting ``busy_timeout_s`` for another process's lock; read-write ones in WAL
    mode without an fsync per commit (a killed process loses nothing)."""
    target, uri = (f"file:{path}?mode=ro", True) if read_only else (str(path), False)
    conn = sqlite3.connect(
        target, uri=uri, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        if not read_only:
            write_ahead(conn, busy_timeout_s)
    except BaseException:
        conn.close()
        raise
    return conn


def write_ahead(conn: sqlite3.Connection, busy_timeout_s: float) -> None:
    """Put the file in WAL mode without an fsync per commit (a killed process loses nothing).

    Why the loop: the first switch of a new file to WAL needs its exclusive lock, and while
    another connection opens the same new file (the tasks of a batch, two processes) SQLite
    answers "database is locked" at once, without waiting out the busy timeout (measured: 6 to
    30 of 600 openers failed, six processes opening 100 new files together;
    tests/integration/test_sqlite_first_open.py). The switch is retried until
    ``busy_timeout_s``; once the file is in WAL mode the pragma takes no lock."""
    deadline = time.monotonic() + busy_timeout_s
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            break
        except sqlite3.OperationalError as exc:
            busy = getattr(exc, "sqlite_errorcode", sqlite3.SQLITE_BUSY) & 0xFF
            if busy not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise
            if time.monotonic() >= deadline:
                raise
        time.sleep(0.02)
    conn.execute("PRAGMA synchronous = NORMAL")


class SqliteTransactions:
    """Mixin: needs ``path``, ``_conn``, ``_lock`` (an RLock), ``_busy_timeout_s``,
    ``read_only``, ``_atomic`` (a threading.local) and ``_index``."""

    path: Path
    _conn: sqlite3.Connection
    _lock: Any  # threading.RLock
    _busy_timeout_s: float
    read_only: bool
    _atomic: threading.local
    _index: Any

    def _connect(self, *, read_only: bool = False) -> sqlite3.Connection:
        return connect(self.path, self._busy_timeout_s, read_only=read_only)

    @contextmanager
    def _transaction(self, mode: str = "IMMEDIATE") -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` takes the write lock up front: a deferred transaction that later
        upgrades to write can fail with SQLITE_BUSY that the busy timeout does not retry."""
        if self.read_only and mode == "IMMEDIATE":
            raise LibraryError(
                f"library {self.path} is read-only (opened for reading: the file is not "
                "writable); make it writable to change the library"
            )
        if getattr(self._atomic, "depth", 0):
            if mode == "IMMEDIATE" and not self._atomic.begun:
                self._lock.acquire()  # held by this thread until its atomic() block ends
                try:
                    self._conn.execute("BEGIN IMMEDIATE")
                except BaseException:
                    self._lock.release()
                    raise
                self._atomic.begun = True
            if self._atomic.begun:  # join it; a failing write undoes only itself
                with self._lock:
                    self._conn.execute("SAVEPOINT write")
                    try:
                        yield self._conn
                    except BaseException:
                        self._conn.execute("ROLLBACK TO write")
                        self._conn.execute("RELEASE write")
                        raise
                    self._conn.execute("RELEASE write")
                return
        with transaction(self._conn, self._lock, mode) as conn:
            yield conn

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Every write this thread makes inside the block is one transaction: all of them are
        committed at the end, or none (an exception, or the process killed). The transaction
        begins at the first write, so the block may do slow work (a scratch kernel, a model)
        before it writes without holding the database's write lock. Blocks nest."""
        state = self._atomic
        if getattr(state, "depth", 0):
            state.depth += 1
            try:
                yield
            finally:
                state.depth -= 1
            return
        state.depth, state.begun = 1, False
        try:
            yield
            if state.begun:
                self._conn.execute("COMMIT")
        except BaseException:
            if state.begun:
                self._conn.execute("ROLLBACK")
                self._index = None  # it may hold rows that were rolled back
            raise
        finally:
            if state.begun:
                state.begun = False
                self._lock.release()
            state.depth = 0
