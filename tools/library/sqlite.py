"""The embedded default library: one SQLite file, FTS5 for keywords, numpy for vectors.

Why SQLite: zero set-up, one file a user can copy, and safe for several processes (WAL mode,
a busy timeout, every write in one ``BEGIN IMMEDIATE`` transaction). A record's row, its name
and alias rows, its FTS row and its vectors are written together or not at all.

Vectors are float32 blobs, two per record (the docstring view and the origin-task view). They
are loaded into one in-memory matrix per view and searched with numpy; the matrix is reloaded
when ``meta.generation`` changes, a counter every content or status write bumps in the same
transaction, so writes by other processes are seen and counter-only updates (uses, retrieved)
do not invalidate the cache.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
from dynagraph.tools.embeddings import Embedder, embed_queries_soon, embed_query_soon
from dynagraph.tools.library.base import (
    STATUSES,
    FunctionRecord,
    LibraryError,
    LibraryUnavailable,
    SearchHit,
)
from dynagraph.tools.library.ledger import (
    bump_task_index,
    decision_rows,
    insert_decisions,
    read_decisions,
    read_task_index,
    read_thread_decisions,
)
from dynagraph.tools.library.sqlite_atomic import SqliteTransactions
from dynagraph.tools.library.sqlite_schema import (
    COLUMN_LIST,
    COLUMNS,
    JSON_COLUMNS,
    SCHEMA_VERSION,
    statements,
)
from dynagraph.tools.library.sqlite_search import (
    VectorIndex,
    hybrid_ranking,
    keyword_scores,
    load_vector_index,
    row_products,
)
from dynagraph.tools.library.verified import VerifiedReads


def _to_blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=np.float32).tobytes()


class SqliteLibrary(SqliteTransactions):
    """A :class:`~tools.library.base.FunctionLibrary` in one SQLite file.

    One connection per instance, shared by threads under a lock; open one instance per process.
    Embedding happens outside the lock and outside transactions, so a slow embedder never holds
    the database's write lock.
    """

    def __init__(self, path: str | Path, embedder: Embedder, *, busy_timeout_s: float = 30.0):
        self.path = Path(path)
        self.embedder = embedder
        self.embedder_name: str = embedder.name
        self._lock = threading.RLock()
        self._index: VectorIndex | None = None
        #: opened read-only because the file cannot be written (every read works, writes fail)
        self.read_only = False
        self._busy_timeout_s = busy_timeout_s
        self._atomic = threading.local()  # per thread: depth of atomic() blocks, begun or not
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = self._connect()
            try:
                self._init_schema()
            except sqlite3.OperationalError as exc:
                if "readonly" not in str(exc).lower() or not self.path.exists():
                    raise
                self._conn.close()  # an existing file we may not write: serve the reads
                self._conn = self._connect(read_only=True)
                self.read_only = True
                self._check_meta(dict(self._conn.execute("SELECT key, value FROM meta")))
        except (sqlite3.DatabaseError, OSError) as exc:
            self._close_quietly()
            if isinstance(exc, OSError) or "unable to open" in str(exc):
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                raise LibraryUnavailable(
                    f"cannot open library {self.path}: {why} "
                    "(set library.path or DYNAGRAPH_HOME to a writable place)"
                ) from exc
            raise LibraryError(f"cannot open library {self.path}: {exc}") from exc
        except LibraryError:
            self._close_quietly()
            raise

    # -- connection and schema -----------------------------------------------------------------
    def _init_schema(self) -> None:
        with self._transaction() as conn:
            for statement in statements():
                conn.execute(statement)
            defaults = {
                "schema_version": str(SCHEMA_VERSION),
                "embedder": self.embedder_name,
                "embedder_dim": str(self.embedder.dim or 0),
                "generation": "0",
                "tasks": "0",  # the librarian's task counter (pruning counts tasks)
            }
            conn.executemany(
                "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", defaults.items()
            )
            self._check_meta(dict(conn.execute("SELECT key, value FROM meta")))

    def _check_meta(self, meta: dict[str, str]) -> None:
        """Refuse a library this code cannot read right (newer schema, another embedder)."""
        if int(meta["schema_version"]) > SCHEMA_VERSION:
            raise LibraryError(
                f"library {self.path} has schema version {meta['schema_version']}; "
                f"this dynagraph reads up to {SCHEMA_VERSION}: upgrade dynagraph"
            )
        if meta["embedder"] != self.embedder_name:
            raise LibraryError(
                f"library {self.path} was built with embedder {meta['embedder']}; this "
                f"config uses {self.embedder_name}: export/import to re-embed"
            )
        stored_dim, dim = int(meta["embedder_dim"]), int(self.embedder.dim or 0)
        if stored_dim and dim and stored_dim != dim:
            raise LibraryError(
                f"library {self.path} holds {stored_dim}-d vectors; embedder "
                f"{self.embedder_name} makes {dim}-d ones: export/import to re-embed"
            )

    def _close_quietly(self) -> None:
        conn = getattr(self, "_conn", None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        with self._lock:
            self._conn.close()
            self._index = None

    def __enter__(self) -> SqliteLibrary:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- rows ----------------------------------------------------------------------------------
    @staticmethod
    def _row_values(record: FunctionRecord) -> list[Any]:
        data = record.to_dict()
        return [
            json.dumps(data[c], ensure_ascii=False) if c in JSON_COLUMNS else data[c]
            for c in COLUMNS
        ]

    @staticmethod
    def _record(row: sqlite3.Row | tuple) -> FunctionRecord:
        data = {
            c: json.loads(v) if c in JSON_COLUMNS else v for c, v in zip(COLUMNS, row, strict=True)
        }
        return FunctionRecord.from_dict(data)

    def _select(
        self, where: str, params: Iterable[Any] = (), tail: str = ""
    ) -> list[FunctionRecord]:
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {COLUMN_LIST} FROM functions f WHERE {where} {tail}", tuple(params)
            ).fetchall()
        return [self._record(row) for row in rows]

    # -- writes --------------------------------------------------------------------------------
    def add(self, record: FunctionRecord) -> FunctionRecord:
        if record.status not in STATUSES:
            raise LibraryError(f"status must be one of {STATUSES}, not {record.status!r}")
        try:
            values = self._row_values(record)
        except (TypeError, ValueError) as exc:
            raise LibraryError(f"function {record.name}: a field is not JSON ({exc})") from exc
        doc_vec, task_vec = self._embed_views(record)
        with self._transaction() as conn:
            self._check_dim(conn, doc_vec.shape[0])
            seq = self._upsert_row(conn, values)
            self._write_names(conn, seq, record)
            self._write_fts(conn, seq, record)
            self._write_vectors(conn, seq, doc_vec, task_vec)
            self._bump_generation(conn)
        stored = self.get(record.id)
        assert stored is not None
        return stored

    def _embed_views(self, record: FunctionRecord) -> tuple[np.ndarray, np.ndarray | None]:
        """The record's two view vectors. An upsert that leaves both view texts unchanged (new
        aliases, counters, probes, tags) reuses the stored vectors: embedding is the slow part
        of a write (seconds for a long docstring with the bundled model on a busy machine)."""
        task = record.task_view()
        stored = self._stored_vectors(record, task)
        if stored is not None:
            return stored
        texts = [record.doc_view(), task] if task else [record.doc_view()]
        mat = self.embedder.embed_documents(texts)  # its passage cache: see embeddings.py
        return mat[0], (mat[1] if task else None)

    def _stored_vectors(
        self, record: FunctionRecord, task: str
    ) -> tuple[np.ndarray, np.ndarray | None] | None:
        previous = self.get(record.id)
        if previous is None or previous.doc_view() != record.doc_view():
            return None
        if previous.task_view() != task:
            return None
        with self._lock:
            row = self._conn.execute(
                "SELECT v.doc, v.task FROM vectors v JOIN functions f ON f.seq = v.seq "
                "WHERE f.id = ?",
                (record.id,),
            ).fetchone()
        if row is None or (row[1] is None) != (not task):
            return None
        doc = np.frombuffer(row[0], dtype=np.float32).copy()
        return doc, (np.frombuffer(row[1], dtype=np.float32).copy() if task else None)

    def _check_dim(self, conn: sqlite3.Connection, dim: int) -> None:
        (stored,) = conn.execute("SELECT value FROM meta WHERE key = 'embedder_dim'").fetchone()
        if int(stored) == 0:
            conn.execute("UPDATE meta SET value = ? WHERE key = 'embedder_dim'", (str(dim),))
        elif int(stored) != dim:
            raise LibraryError(
                f"library {self.path} holds {stored}-d vectors; embedder {self.embedder_name} "
                f"returned {dim}-d ones: export/import to re-embed"
            )

    def _upsert_row(self, conn: sqlite3.Connection, values: list[Any]) -> int:
        """Upsert on id keeping ``seq`` (unlike INSERT OR REPLACE, which would renumber it)."""
        updates = ", ".join(f'"{c}" = excluded."{c}"' for c in COLUMNS if c != "id")
        placeholders = ", ".join("?" for _ in COLUMNS)
        (seq,) = conn.execute(
            f"INSERT INTO functions ({COLUMN_LIST}) VALUES ({placeholders}) "
            f'ON CONFLICT("id") DO UPDATE SET {updates} RETURNING seq',
            values,
        ).fetchone()
        return int(seq)

    def _write_names(self, conn: sqlite3.Connection, seq: int, record: FunctionRecord) -> None:
        conn.execute("DELETE FROM names WHERE seq = ?", (seq,))
        names = {record.name, *record.aliases}
        conn.executemany("INSERT INTO names (name, seq) VALUES (?, ?)", [(n, seq) for n in names])

    def _write_fts(self, conn: sqlite3.Connection, seq: int, record: FunctionRecord) -> None:
        conn.execute("DELETE FROM functions_fts WHERE rowid = ?", (seq,))
        conn.execute(
            "INSERT INTO functions_fts (rowid, text) VALUES (?, ?)", (seq, record.keyword_text())
        )

    def _write_vectors(
        self, conn: sqlite3.Connection, seq: int, doc: np.ndarray, task: np.ndarray | None
    ) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO vectors (seq, doc, task) VALUES (?, ?, ?)",
            (seq, _to_blob(doc), None if task is None else _to_blob(task)),
        )

    @staticmethod
    def _bump_generation(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")

    def record_use(self, record_id: str, *, success: bool, task_index: int | None = None) -> None:
        with self._transaction() as conn:
            cur = conn.execute(
                "UPDATE functions SET uses = uses + 1, successes = successes + ?, "
                "last_used_task = COALESCE(?, last_used_task) WHERE id = ?",
                (1 if success else 0, task_index, record_id),
            )
            if cur.rowcount == 0:
                raise LibraryError(f"no function with id {record_id} in {self.path}")

    def record_retrieved(self, record_ids: Iterable[str]) -> None:
        """Counts one retrieval per id given; unknown ids are ignored (nothing to count)."""
        ids = [(i,) for i in record_ids]
        if not ids:
            return
        with self._transaction() as conn:
            conn.executemany("UPDATE functions SET retrieved = retrieved + 1 WHERE id = ?", ids)

    def set_status(self, record_id: str, status: str, reason: str = "") -> None:
        if status not in STATUSES:
            raise LibraryError(f"status must be one of {STATUSES}, not {status!r}")
        with self._transaction() as conn:
            cur = conn.execute(
                "UPDATE functions SET status = ?, status_reason = ? WHERE id = ?",
                (status, reason, record_id),
            )
            if cur.rowcount == 0:
                raise LibraryError(f"no function with id {record_id} in {self.path}")
            self._bump_generation(conn)

    # -- the librarian's journal ---------------------------------------------------------------
    def next_task_index(self) -> int:
        with self._transaction() as conn:
            return bump_task_index(conn)

    def task_index(self) -> int:
        with self._lock:
            return read_task_index(self._conn)

    def mark_used(self, record_ids: Iterable[str], task_index: int) -> None:
        ids = [(int(task_index), i) for i in dict.fromkeys(record_ids)]
        if not ids:
            return
        with self._transaction() as conn:
            conn.executemany(
                "UPDATE functions SET last_used_task = MAX(last_used_task, ?) WHERE id = ?", ids
            )

    def log_decisions(self, entries: Iterable[dict[str, Any]]) -> None:
        rows = decision_rows(entries)
        if rows:
            with self._transaction() as conn:
                insert_decisions(conn, rows)

    def decision_log(self, *, limit: int = 100, name: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return read_decisions(self._conn, limit=limit, name=name)

    def thread_decisions(self, thread: str) -> list[dict[str, Any]]:
        """Every decision logged for ``thread``, oldest first."""
        with self._lock:
            return read_thread_decisions(self._conn, thread)

    # -- reads ---------------------------------------------------------------------------------
    def get(self, record_id: str) -> FunctionRecord | None:
        found = self._select("id = ?", (record_id,))
        return found[0] if found else None

    def find_by_hash(self, ast_hash: str) -> FunctionRecord | None:
        found = self._select(
            "ast_hash = ?", (ast_hash,), "ORDER BY version DESC, created_at DESC, seq DESC LIMIT 1"
        )
        return found[0] if found else None

    def get_by_name(self, name: str, *, include_inactive: bool = False) -> FunctionRecord | None:
        where = "seq IN (SELECT seq FROM names WHERE name = ?)"
        if not include_inactive:
            where += " AND status = 'active'"
        found = self._select(
            where, (name,), "ORDER BY version DESC, created_at DESC, seq DESC LIMIT 1"
        )
        return found[0] if found else None

    def versions(self, name: str) -> list[FunctionRecord]:
        return self._select(
            "seq IN (SELECT seq FROM names WHERE name = ?)",
            (name,),
            "ORDER BY version, created_at, seq",
        )

    def list(self, *, status: str | None = None) -> list[FunctionRecord]:
        if status is None:
            return self._select("1", (), "ORDER BY created_at, seq")
        return self._select("status = ?", (status,), "ORDER BY created_at, seq")

    def stats(self) -> dict[str, Any]:
        with self._lock:
            counts = dict(
                self._conn.execute("SELECT status, COUNT(*) FROM functions GROUP BY status")
            )
        by_status = {s: int(counts.get(s, 0)) for s in STATUSES}
        return {
            "functions": by_status["active"],
            "total": sum(by_status.values()),
            "by_status": by_status,
            "embedder": self.embedder_name,
            "path": str(self.path),
        }

    # -- search --------------------------------------------------------------------------------
    def _vector_index(self) -> VectorIndex:
        """The cached matrices, reloaded when another write (any process) bumped generation.
        Call inside a read transaction so the generation and the rows agree."""
        self._index = load_vector_index(self._conn, int(self.embedder.dim or 0), self._index)
        return self._index

    def search(
        self,
        query: str,
        k: int = 5,
        *,
        status: str | None = "active",
        tags: Iterable[str] | None = None,
        alpha: float = 0.5,
    ) -> list[SearchHit]:
        """Hybrid search: ``alpha * minmax(cosine) + (1 - alpha) * bm25 / max(bm25)`` over the
        union of the best vector and keyword candidates passing the filters
        (tools/library/sqlite_search.py). A hit's ``vector_score`` is the raw cosine
        (comparable across queries, usable as a threshold), its ``keyword_score`` the
        normalized bm25. With ``alpha == 0`` only keyword matches are returned."""
        if k <= 0:
            return []
        alpha = min(max(float(alpha), 0.0), 1.0)
        embedding: Future[np.ndarray] | None = None
        with self._transaction("DEFERRED"):
            first = self._vector_index()
            if not len(first.rows(status, tags)):
                return []  # nothing could match: spare the query embedding (~20-70 ms)
            if alpha > 0:  # the embedder releases the GIL: keywords are scored meanwhile
                embedding = embed_query_soon(self.embedder, query)
            keyword = keyword_scores(self._conn, query, first) if alpha < 1 else {}
        query_vec = embedding.result() if embedding is not None else None  # outside the lock
        with self._transaction("DEFERRED"):
            index = self._vector_index()
            if index is not first and alpha < 1:  # the library changed meanwhile
                keyword = keyword_scores(self._conn, query, index)
            ranked = hybrid_ranking(index, index.rows(status, tags), query_vec, keyword, alpha, k)
            records = self._records_by_seq([int(index.seqs[p]) for p, *_ in ranked])
        return [
            SearchHit(
                record=records[int(index.seqs[p])],
                score=fused,
                vector_score=vector,
                keyword_score=kw,
            )
            for p, fused, vector, kw in ranked
        ]

    def prepare_search(self, *queries: str) -> None:
        """Embed ``queries`` in the background (the first first), unless no active record
        could match (a search would not embed them either)."""
        if queries and self._any_with_status("active"):
            embed_queries_soon(self.embedder, queries)

    def nearest(self, text: str, k: int = 5, *, status: str | None = "active") -> list[SearchHit]:
        """Docstring-view cosine only. ``text`` is embedded as a passage, like the stored
        doc views, because dedup compares a function with functions (symmetric similarity)."""
        if k <= 0 or not self._any_with_status(status):
            return []  # nothing to compare with: no embedding (the librarian's quarantine check)
        vec = self.embedder.embed_documents([text])[0]
        with self._transaction("DEFERRED"):
            index = self._vector_index()
            rows = index.rows(status, None)
            doc_cos = row_products(index.doc, vec)[rows].astype(np.float64)
            order = np.argsort(-doc_cos, kind="stable")[:k]
            records = self._records_by_seq([int(index.seqs[rows[i]]) for i in order])
        return [
            SearchHit(
                record=records[int(index.seqs[rows[i]])],
                score=float(doc_cos[i]),
                vector_score=float(doc_cos[i]),
            )
            for i in order
        ]

    def _any_with_status(self, status: str | None) -> bool:
        """Whether a record with ``status`` (None: any) is stored: a search over none needs no
        query vector, which with the bundled model is the slow part (100-300 ms a doc view)."""
        with self._transaction("DEFERRED"):
            return len(self._vector_index().rows(status, None)) > 0

    def _records_by_seq(self, seqs: list[int]) -> dict[int, FunctionRecord]:
        if not seqs:
            return {}
        marks = ", ".join("?" for _ in seqs)
        rows = self._conn.execute(
            f"SELECT seq, {COLUMN_LIST} FROM functions WHERE seq IN ({marks})", seqs
        ).fetchall()
        return {int(row[0]): self._record(row[1:]) for row in rows}


class VerifiedSqliteLibrary(VerifiedReads, SqliteLibrary):
    """The SQLite library whose reads drop records failing their integrity check."""
