"""Open the Weaviate library a run uses: the server behind a local outbox, reads checked."""

from __future__ import annotations

from pathlib import Path

from dynagraph.tools.embeddings import Embedder
from dynagraph.tools.library.outbox import OutboxLibrary, VerifiedOutboxLibrary
from dynagraph.tools.library.weaviate import WeaviateLibrary
from dynagraph.tools.library.weaviate_connect import WeaviateConfig


def open_weaviate_library(
    embedder: Embedder,
    config: WeaviateConfig,
    outbox_path: str | Path,
    *,
    flush_on_open: bool = True,
    admit_offline: bool = True,
    verify: bool = True,
) -> OutboxLibrary:
    """The library a run uses: Weaviate behind a local outbox, whose queue from an earlier
    outage is flushed here (``flush_on_open``), reads integrity-checked (``verify``). Raises
    :class:`LibraryUnavailableError` (one line) when the server cannot be reached at all."""
    primary = WeaviateLibrary(embedder, config=config)
    try:
        return (VerifiedOutboxLibrary if verify else OutboxLibrary)(
            primary,
            outbox_path,
            target=config.target(),
            flush_on_open=flush_on_open,
            admit_offline=admit_offline,
        )
    except BaseException:
        primary.close()
        raise
