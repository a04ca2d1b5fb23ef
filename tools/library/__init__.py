"""The function library: one protocol, an embedded SQLite backend and a Weaviate backend.

Callers build a library with :func:`open_library` from the config's backend name, so nothing
outside this package imports a backend module directly (Weaviate's client is imported only when
that backend is chosen). Importing the package loads neither backend: ``SqliteLibrary`` (and
numpy with it) loads on first use.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from dynagraph.tools.embeddings import Embedder
from dynagraph.tools.library.base import (
    RECORD_NAMESPACE,
    STATUSES,
    FunctionLibrary,
    FunctionRecord,
    LibraryError,
    SearchHit,
    Status,
    archive,
    export_jsonl,
    record_id_for,
    utc_now,
)
from dynagraph.tools.library.jsonl import import_jsonl, iter_jsonl
from dynagraph.tools.library.verified import VerifiedReads

if TYPE_CHECKING:  # loaded on first use (PEP 562): sqlite.py imports numpy (~0.1 s)
    from dynagraph.tools.library.sqlite import SqliteLibrary, VerifiedSqliteLibrary

__all__ = [
    "RECORD_NAMESPACE",
    "STATUSES",
    "FunctionLibrary",
    "FunctionRecord",
    "LibraryError",
    "SearchHit",
    "SqliteLibrary",
    "VerifiedReads",
    "VerifiedSqliteLibrary",
    "Status",
    "archive",
    "export_jsonl",
    "import_jsonl",
    "iter_jsonl",
    "open_library",
    "record_id_for",
    "utc_now",
]


def __getattr__(name: str) -> Any:
    if name not in ("SqliteLibrary", "VerifiedSqliteLibrary"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from dynagraph.tools.library import sqlite

    value = getattr(sqlite, name)
    globals()[name] = value
    return value


def open_library(
    backend: str,
    *,
    path: str | Path | None = None,
    embedder: Embedder,
    verify: bool = True,
    **options: Any,
) -> FunctionLibrary:
    """Open the library a config names: ``sqlite`` (needs ``path``) or ``weaviate`` (the
    options go to ``WeaviateLibrary``: url, api key, collection...). With ``verify`` (the
    default) every read drops records whose code no longer matches their hash or whose
    definition would run code (tools/library/verified.py); ``verify=False`` is for benches
    that store synthetic records."""
    if backend == "sqlite":
        if path is None:
            raise LibraryError("the sqlite library needs a path (library.path in the config)")
        if options:
            raise LibraryError(f"unknown sqlite library options: {', '.join(sorted(options))}")
        from dynagraph.tools.library.sqlite import SqliteLibrary, VerifiedSqliteLibrary

        return (VerifiedSqliteLibrary if verify else SqliteLibrary)(path, embedder)
    if backend == "weaviate":
        try:
            from dynagraph.tools.library.weaviate import VerifiedWeaviateLibrary, WeaviateLibrary
        except ImportError as exc:
            raise LibraryError(
                f"the weaviate library backend cannot be imported ({exc}); "
                "install weaviate-client>=4.21.3,<4.24"
            ) from exc
        if not verify:
            return WeaviateLibrary(embedder=embedder, **options)
        return VerifiedWeaviateLibrary(embedder=embedder, **options)
    raise LibraryError(f"unknown library backend {backend!r}; use sqlite or weaviate")
