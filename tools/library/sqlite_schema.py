"""The SQLite library's schema: one row per record, name/alias rows, FTS5, vectors, meta."""

from __future__ import annotations

from dataclasses import fields

from dynagraph.tools.library.base import FunctionRecord

SCHEMA_VERSION = 1

#: FunctionRecord fields stored as JSON text (lists and dicts).
JSON_COLUMNS = frozenset({"imports", "globals", "depends_on", "probes", "tags", "aliases"})
COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(FunctionRecord))
COLUMN_LIST = ", ".join(f'"{c}"' for c in COLUMNS)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS functions (
    seq INTEGER PRIMARY KEY,  -- stable across upserts: names, FTS and vectors key on it
    "id" TEXT NOT NULL UNIQUE,
    "name" TEXT NOT NULL,
    "code" TEXT NOT NULL,
    "ast_hash" TEXT NOT NULL,
    "signature" TEXT NOT NULL,
    "docstring" TEXT NOT NULL,
    "imports" TEXT NOT NULL,
    "globals" TEXT NOT NULL,
    "depends_on" TEXT NOT NULL,
    "origin_task" TEXT NOT NULL,
    "origin_thread" TEXT NOT NULL,
    "origin_model" TEXT NOT NULL,
    "probes" TEXT NOT NULL,
    "tags" TEXT NOT NULL,
    "aliases" TEXT NOT NULL,
    "version" INTEGER NOT NULL,
    "uses" INTEGER NOT NULL,
    "retrieved" INTEGER NOT NULL,
    "successes" INTEGER NOT NULL,
    "status" TEXT NOT NULL,
    "status_reason" TEXT NOT NULL,
    "supersedes" TEXT,
    "created_at" TEXT NOT NULL,
    "last_used_task" INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS functions_name ON functions("name");
CREATE INDEX IF NOT EXISTS functions_ast_hash ON functions("ast_hash");
CREATE INDEX IF NOT EXISTS functions_status ON functions("status");
-- a function's name and its aliases, for get_by_name / versions
CREATE TABLE IF NOT EXISTS names (
    name TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (name, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS vectors (
    seq INTEGER PRIMARY KEY,
    doc BLOB NOT NULL,
    task BLOB  -- NULL when the record has no origin task
);
CREATE VIRTUAL TABLE IF NOT EXISTS functions_fts USING fts5(text, tokenize = 'unicode61');
-- the librarian's decision log (added after schema 1 shipped: created on open, so older files
-- gain it without a migration and older readers ignore it)
CREATE TABLE IF NOT EXISTS decisions (
    seq INTEGER PRIMARY KEY,
    "name" TEXT NOT NULL,
    "action" TEXT NOT NULL,
    "target" TEXT,
    "entry" TEXT NOT NULL  -- the whole decision as JSON
);
CREATE INDEX IF NOT EXISTS decisions_name ON decisions("name");
CREATE INDEX IF NOT EXISTS decisions_target ON decisions("target");
"""


def statements() -> list[str]:
    """The schema as single statements (``executescript`` would COMMIT our transaction)."""
    return [s.strip() for s in SCHEMA.split(";\n") if s.strip()]
