"""The Weaviate adapter on the wire, offline: a real weaviate-client against a fake server.

No Weaviate server can run here, so these tests do what weaviate-client's own ``mock_tests``
do: REST on a pytest-httpserver and gRPC on an in-process server built from the client's
protobufs (``tests/support/weaviate_fake.py``). They assert what the adapter *sends* (schema,
hybrid / near-vector / filter requests, batches with uuid5 ids and vectors) and how it *reads*
replies. Ranking quality is the contract suite's job against a real server
(``DYNAGRAPH_TEST_WEAVIATE_URL``, tests/contract/test_weaviate_contract.py).

Unclosed clients fail these tests: ResourceWarning is an error, and a garbage collection after
each test makes the client's ``__del__`` warning fire inside that test.
"""

from __future__ import annotations

import gc
import socket
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import weaviate.retry
import yaml
from dynagraph.tools.library.base import FunctionRecord, LibraryError, record_id_for
from dynagraph.tools.library.outbox import LibraryUnavailableError
from dynagraph.tools.library.weaviate import (
    WeaviateConfig,
    WeaviateLibrary,
    properties_to_record,
    record_to_properties,
)
from pydantic import ValidationError
from weaviate.proto.v1 import base_pb2, base_search_pb2

from tests.support.weaviate_fake import (
    FakeWeaviate,
    TinyEmbedder,
    query_vector,
    unpack_floats,
    with_server_defaults,
)

pytestmark = [
    pytest.mark.filterwarnings("error::ResourceWarning"),
    pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning"),
]

REPO = Path(__file__).resolve().parents[2]
COLLECTION = "DynagraphFunction"
Op = base_pb2.Filters


@pytest.fixture(autouse=True)
def _collect_garbage_after_each_test() -> Iterator[None]:
    yield
    gc.collect()


@pytest.fixture(scope="module")
def _server() -> Iterator[FakeWeaviate]:
    with FakeWeaviate() as server:
        yield server


@pytest.fixture
def fake(_server: FakeWeaviate) -> FakeWeaviate:
    """One server per module (stopping one takes half a second), emptied for each test."""
    _server.reset()
    return _server


@pytest.fixture
def embedder() -> TinyEmbedder:
    return TinyEmbedder()


@pytest.fixture
def library(fake: FakeWeaviate, embedder: TinyEmbedder) -> Iterator[WeaviateLibrary]:
    with WeaviateLibrary(embedder, config=fake.config()) as lib:
        yield lib


def record(name: str = "parse_iso_date", **fields: object) -> FunctionRecord:
    values: dict[str, object] = {
        "code": f"def {name}(text):\n    ...\n",
        "ast_hash": f"hash-of-{name}",
        "signature": "(text: str) -> datetime.date",
        "docstring": "Parse an ISO-8601 date.",
        "origin_task": "How many days between 2024-03-01 and 2024-04-15?",
        "tags": ["dates"],
    }
    values.update(fields)
    return FunctionRecord(name=name, **values)  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def filters_of(message: base_pb2.Filters) -> list[tuple[str, str, object]]:
    """A filter tree flattened to (operator, property, value) leaves, in order."""
    if message.operator in (Op.OPERATOR_AND, Op.OPERATOR_OR):
        return [leaf for sub in message.filters for leaf in filters_of(sub)]
    value: object = message.value_text
    if message.operator in (Op.OPERATOR_CONTAINS_ALL, Op.OPERATOR_CONTAINS_ANY):
        value = list(message.value_text_array.values)
    return [(Op.Operator.Name(message.operator), message.target.property, value)]


# -- the schema -------------------------------------------------------------------------------------
def test_schema_has_typed_properties_and_self_provided_named_vectors(
    library: WeaviateLibrary, fake: FakeWeaviate, embedder: TinyEmbedder
) -> None:
    (create,) = fake.rest("POST", "/v1/schema")
    body = create.body
    assert body["class"] == COLLECTION
    assert f"embedder={embedder.name}" in body["description"]
    types = {p["name"]: p["dataType"] for p in body["properties"]}
    record_fields = set(FunctionRecord.__dataclass_fields__) - {"id"}  # id is the object uuid
    assert set(types) == record_fields | {"keywords"}
    for name in ("imports", "globals", "depends_on", "tags", "aliases"):
        assert types[name] == ["text[]"], name
    for name in ("version", "uses", "retrieved", "successes", "last_used_task"):
        assert types[name] == ["int"], name
    assert types["probes"] == types["code"] == types["created_at"] == ["text"]
    props = {p["name"]: p for p in body["properties"]}
    searchable = {n for n, p in props.items() if p.get("indexSearchable")}
    assert searchable == {"keywords"}  # BM25 ranks on the same text as SQLite's FTS
    assert props["keywords"]["tokenization"] == "word"
    for name in ("name", "status", "tags", "aliases", "ast_hash"):
        assert props[name]["indexFilterable"] and props[name]["tokenization"] == "field", name
    assert set(body["vectorConfig"]) == {"doc", "task"}
    for vector in body["vectorConfig"].values():
        assert vector["vectorizer"] == {"none": {}}  # self-provided: no vectorizer module
        assert vector["vectorIndexConfig"]["distance"] == "cosine"
    assert "vectorizer" not in body and "moduleConfig" not in body
    assert "multiTenancyConfig" not in body or not body["multiTenancyConfig"].get("enabled")


def test_an_existing_collection_is_reused(fake: FakeWeaviate, embedder: TinyEmbedder) -> None:
    for _ in range(2):
        with WeaviateLibrary(embedder, config=fake.config()):
            pass
    assert len(fake.rest("POST", "/v1/schema")) == 1


def test_refuses_a_collection_built_by_another_embedder(
    fake: FakeWeaviate, embedder: TinyEmbedder
) -> None:
    with WeaviateLibrary(embedder, config=fake.config()) as lib:
        lib.add(record())

    class OtherEmbedder(TinyEmbedder):
        name = "openai:text-embedding-3-small"

    with pytest.raises(LibraryError) as info:
        WeaviateLibrary(OtherEmbedder(), config=fake.config())
    message = str(info.value)
    assert "\n" not in message
    assert embedder.name in message and OtherEmbedder.name in message
    assert "export/import" in message
    assert len(fake.stored(COLLECTION)) == 1  # nothing was touched


def test_refuses_a_collection_dynagraph_did_not_make(
    fake: FakeWeaviate, embedder: TinyEmbedder
) -> None:
    fake.classes["Articles"] = with_server_defaults(
        {"class": "Articles", "description": "someone's articles", "properties": []}
    )
    with pytest.raises(LibraryError, match="not made by dynagraph"):
        WeaviateLibrary(embedder, config=fake.config(collection="Articles"))


def test_a_server_older_than_the_client_supports_is_one_line(embedder: TinyEmbedder) -> None:
    with FakeWeaviate(version="1.26.3") as old, pytest.raises(LibraryError) as info:
        WeaviateLibrary(embedder, config=old.config())
    assert "\n" not in str(info.value) and "1.26.3" in str(info.value)
    assert not isinstance(info.value, LibraryUnavailableError)  # it answered: not an outage


# -- writes -----------------------------------------------------------------------------------------
def test_add_replaces_and_inserts_only_when_absent(
    library: WeaviateLibrary, fake: FakeWeaviate, embedder: TinyEmbedder
) -> None:
    rec = record()
    library.add(rec)
    path = f"/v1/objects/{COLLECTION}/{rec.id}"
    assert [c.method for c in fake.rest_calls if c.path in (path, "/v1/objects")] == [
        "PUT",
        "POST",
    ]
    (insert,) = fake.rest("POST", "/v1/objects")
    assert insert.body["id"] == rec.id == record_id_for(rec.ast_hash)
    assert insert.body["properties"] == record_to_properties(rec)
    doc, task = embedder.embed_documents([rec.doc_view(), rec.task_view()])
    assert np.allclose(insert.body["vectors"]["doc"], doc)
    assert np.allclose(insert.body["vectors"]["task"], task)

    library.add(FunctionRecord.from_dict({**rec.to_dict(), "docstring": "Parse a date."}))
    assert [c.method for c in fake.rest_calls if c.path in (path, "/v1/objects")][2:] == ["PUT"]
    assert fake.stored(COLLECTION)[rec.id].properties["docstring"] == "Parse a date."


def test_without_an_origin_task_the_task_vector_is_the_doc_vector(
    library: WeaviateLibrary, fake: FakeWeaviate
) -> None:
    library.add(record(origin_task=""))
    (insert,) = fake.rest("POST", "/v1/objects")
    assert insert.body["vectors"]["task"] == insert.body["vectors"]["doc"]


def test_a_record_whose_id_is_not_a_uuid_is_refused_before_sending(
    library: WeaviateLibrary, fake: FakeWeaviate
) -> None:
    with pytest.raises(LibraryError, match="not a UUID"):
        library.add(record(id="not-a-uuid"))
    assert fake.rest("PUT", r"/v1/objects/.*") == []


def test_batch_import_sends_uuid5_ids_and_vectors_and_reports_each_failure(
    fake: FakeWeaviate, embedder: TinyEmbedder
) -> None:
    records = [record(f"fn_{i}", tags=[] if i == 0 else ["t"]) for i in range(5)]
    fake.batch_rejections[records[3].id] = "vector lengths don't match"
    with WeaviateLibrary(embedder, config=fake.config(batch_size=2)) as lib:
        report = lib.add_many(records)
    assert report.failed == {records[3].id: "vector lengths don't match"}
    assert report.added == [r.id for r in records if r is not records[3]]

    batches = fake.requests("BatchObjects")
    assert [len(b.objects) for b in batches] == [2, 2, 1]
    sent = [obj for batch in batches for obj in batch.objects]
    assert [obj.uuid for obj in sent] == [record_id_for(r.ast_hash) for r in records]
    first = sent[0]
    assert first.collection == COLLECTION
    vectors = {v.name: unpack_floats(v.vector_bytes) for v in first.vectors}
    doc, task = embedder.embed_documents([records[0].doc_view(), records[0].task_view()])
    assert np.allclose(vectors["doc"], doc) and np.allclose(vectors["task"], task)
    assert "tags" in first.properties.empty_list_props
    text_arrays = {a.prop_name: list(a.values) for a in sent[1].properties.text_array_properties}
    assert text_arrays["tags"] == ["t"]
    assert set(fake.stored(COLLECTION)) == set(report.added)


def test_a_batch_where_every_object_fails_is_reported_not_raised(
    library: WeaviateLibrary, fake: FakeWeaviate
) -> None:
    records = [record("a"), record("b")]
    for r in records:
        fake.batch_rejections[r.id] = "shard is read-only"
    report = library.add_many(records)
    assert report.added == []
    assert set(report.failed) == {r.id for r in records}
    assert all("read-only" in error for error in report.failed.values())


def test_counters_are_read_then_patched(library: WeaviateLibrary, fake: FakeWeaviate) -> None:
    rec = library.add(record())
    library.record_use(rec.id, success=True, task_index=4)
    library.record_use(rec.id, success=False)
    patches = [c.body["properties"] for c in fake.rest("PATCH", rf"/v1/objects/{COLLECTION}/.*")]
    assert patches == [
        {"uses": 1, "successes": 1, "last_used_task": 4},
        {"uses": 2, "successes": 1},
    ]
    library.record_retrieved([rec.id, rec.id, record_id_for("absent"), "not-a-uuid"])
    stored = library.get(rec.id)
    assert stored is not None and (stored.uses, stored.retrieved, stored.last_used_task) == (
        2,
        2,
        4,
    )
    with pytest.raises(LibraryError, match="no function"):
        library.record_use(record_id_for("absent"), success=True)


def test_set_status_patches_and_refuses_unknown_ids_and_statuses(
    library: WeaviateLibrary, fake: FakeWeaviate
) -> None:
    rec = library.add(record())
    library.set_status(rec.id, "quarantined", "failed its probes")
    assert fake.stored(COLLECTION)[rec.id].properties["status"] == "quarantined"
    assert fake.stored(COLLECTION)[rec.id].properties["status_reason"] == "failed its probes"
    with pytest.raises(LibraryError, match="no function"):
        library.set_status(record_id_for("absent"), "archived")  # the server answered 404
    before = len(fake.rest_calls)
    with pytest.raises(LibraryError, match="status must be one of"):
        library.set_status(rec.id, "deleted")
    assert len(fake.rest_calls) == before


# -- searches -----------------------------------------------------------------------------------------
def test_hybrid_request_carries_alpha_vector_limit_and_filters(
    library: WeaviateLibrary, fake: FakeWeaviate, embedder: TinyEmbedder
) -> None:
    library.add(record(tags=["dates", "text"]))
    hits = library.search("parse a date string", k=4, tags=["text", "dates"], alpha=0.3)
    hybrid_req = next(r for r in fake.requests("Search") if r.HasField("hybrid_search"))
    hybrid = hybrid_req.hybrid_search
    assert hybrid.query == "parse a date string"
    assert hybrid.alpha == pytest.approx(0.3)
    assert list(hybrid.properties) == ["keywords"]
    assert hybrid.fusion_type == base_search_pb2.Hybrid.FUSION_TYPE_RELATIVE_SCORE
    assert np.allclose(query_vector(hybrid), embedder.embed_query("parse a date string"))
    weights = {w.target: w.weight for w in hybrid.targets.weights_for_targets}
    assert set(hybrid.targets.target_vectors) == {"doc", "task"} and set(weights) == {"doc", "task"}
    assert hybrid_req.limit == 4
    assert filters_of(hybrid_req.filters) == [
        ("OPERATOR_EQUAL", "status", "active"),
        ("OPERATOR_CONTAINS_ALL", "tags", ["dates", "text"]),
    ]
    assert hybrid_req.filters.operator == Op.OPERATOR_AND
    assert set(hybrid_req.metadata.vectors) == {"doc", "task"} and hybrid_req.metadata.score
    # the keyword part of each hit: a BM25 query restricted to the hits' ids
    bm25_req = next(r for r in fake.requests("Search") if r.HasField("bm25_search"))
    assert bm25_req.bm25_search.query == "parse a date string"
    assert filters_of(bm25_req.filters) == [
        ("OPERATOR_CONTAINS_ANY", "_id", [h.record.id for h in hits])
    ]
    assert hits[0].keyword_score == 1.0 and hits[0].vector_score > 0


def test_status_none_searches_every_status(library: WeaviateLibrary, fake: FakeWeaviate) -> None:
    library.search("anything", k=3, status=None)
    library.search("anything", k=3, status="archived", alpha=1.0)
    first, second = (r for r in fake.requests("Search") if r.HasField("hybrid_search"))
    assert not first.HasField("filters")
    assert filters_of(second.filters) == [("OPERATOR_EQUAL", "status", "archived")]
    assert second.hybrid_search.alpha == 1.0


def test_queries_without_words(library: WeaviateLibrary, fake: FakeWeaviate) -> None:
    assert library.search("  _ ( ", k=3, alpha=0.0) == []  # keywords only, and no keyword
    assert fake.requests("Search") == []
    library.search("((( ", k=3, alpha=0.5)
    (request,) = fake.requests("Search")
    assert request.hybrid_search.query == ""  # sent as a vector-only search
    assert request.hybrid_search.alpha == 1.0
    assert library.search("x", k=0) == []


def test_nearest_sends_a_near_vector_on_the_doc_vector(
    library: WeaviateLibrary, fake: FakeWeaviate, embedder: TinyEmbedder
) -> None:
    rec = record()
    fake.reply_next_search(
        [{"id": rec.id, "properties": record_to_properties(rec), "distance": 0.125}]
    )
    hits = library.nearest("def parse(text): parse a date", k=2, status="quarantined")
    (request,) = fake.requests("Search")
    near = request.near_vector
    assert list(near.targets.target_vectors) == ["doc"]
    expected = embedder.embed_documents(["def parse(text): parse a date"])[0]  # as a passage
    assert np.allclose(query_vector(near), expected)
    assert request.limit == 2 and request.metadata.distance
    assert filters_of(request.filters) == [("OPERATOR_EQUAL", "status", "quarantined")]
    assert [h.record.to_dict() for h in hits] == [rec.to_dict()]
    assert hits[0].score == pytest.approx(0.875) == hits[0].vector_score


def test_canned_search_replies_become_function_records(
    library: WeaviateLibrary, fake: FakeWeaviate, embedder: TinyEmbedder
) -> None:
    full = record(
        "table_column_mean",
        imports=["import pandas as pd"],
        globals=["DEFAULT_COL = 'price'"],
        depends_on=["clean_numbers"],
        probes=[{"args": [[1, 2]], "kwargs": {"col": "x"}, "result": 1.5, "nested": {"a": None}}],
        aliases=["column_mean"],
        version=3,
        uses=5,
        retrieved=7,
        successes=4,
        status_reason="restored — ünïcode",
        supersedes=record_id_for("older"),
        created_at="2025-01-02T03:04:05+00:00",
        last_used_task=9,
    )
    doc, task = embedder.embed_documents([full.doc_view(), full.task_view()])
    # what Weaviate sends for a record with empty lists: the properties are simply absent
    sparse = record("slugify", tags=[], origin_task="")
    sparse_props = {k: v for k, v in record_to_properties(sparse).items() if v != []}
    fake.reply_next_search(
        [
            {
                "id": full.id,
                "properties": record_to_properties(full),
                "vectors": {"doc": doc.tolist(), "task": task.tolist()},
                "score": 0.9,
            },
            {"id": sparse.id, "properties": sparse_props, "score": 0.4},
        ]
    )
    fake.reply_next_search([{"id": full.id, "properties": {}, "score": 2.0}])  # the bm25 query
    hits = library.search("mean of a column", k=2)
    assert [h.record.to_dict() for h in hits] == [full.to_dict(), sparse.to_dict()]
    assert [h.score for h in hits] == [pytest.approx(0.9), pytest.approx(0.4)]
    q = embedder.embed_query("mean of a column")
    assert hits[0].vector_score == pytest.approx(0.5 * float(q @ doc) + 0.5 * float(q @ task))
    assert [h.keyword_score for h in hits] == [1.0, 0.0]


def test_properties_round_trip_without_the_server() -> None:
    rec = record(probes=[{"result": [1, {"x": None}]}], supersedes=None)
    props = record_to_properties(rec)
    assert props["supersedes"] == "" and isinstance(props["probes"], str)
    assert "id" not in props and props["keywords"] == rec.keyword_text()
    assert properties_to_record(rec.id, props).to_dict() == rec.to_dict()


# -- reads ------------------------------------------------------------------------------------------
def test_get_by_name_filters_name_or_alias_and_status(
    library: WeaviateLibrary, fake: FakeWeaviate
) -> None:
    v1 = library.add(record("median", ast_hash="m1", version=1, aliases=["middle"]))
    v2 = library.add(record("median", ast_hash="m2", version=2))
    library.set_status(v2.id, "archived")
    found = library.get_by_name("median")
    assert found is not None and found.id == v1.id
    request = fake.requests("Search")[-1]
    assert filters_of(request.filters) == [
        ("OPERATOR_EQUAL", "name", "median"),
        ("OPERATOR_CONTAINS_ANY", "aliases", ["median"]),
        ("OPERATOR_EQUAL", "status", "active"),
    ]
    assert library.get_by_name("median", include_inactive=True).id == v2.id  # type: ignore[union-attr]
    assert library.get_by_name("middle").id == v1.id  # type: ignore[union-attr]
    assert [r.version for r in library.versions("median")] == [1, 2]
    assert library.find_by_hash("m2").id == v2.id  # type: ignore[union-attr]
    assert library.get(record_id_for("absent")) is None
    assert library.get("not-a-uuid") is None


def test_list_pages_through_the_cursor(library: WeaviateLibrary, fake: FakeWeaviate) -> None:
    records = [record(f"fn_{i:03d}") for i in range(150)]
    assert library.add_many(records).failed == {}
    listed = library.list()
    assert sorted(r.id for r in listed) == sorted(r.id for r in records)
    pages = [r for r in fake.requests("Search") if not r.HasField("filters")]
    assert len(pages) >= 2 and pages[1].after  # a cursor, not an offset with a result window
    library.set_status(records[7].id, "archived")
    assert [r.id for r in library.list(status="archived")] == [records[7].id]


def test_stats_counts_each_status_on_the_server(
    library: WeaviateLibrary, fake: FakeWeaviate, embedder: TinyEmbedder
) -> None:
    for name in ("a", "b", "c"):
        library.add(record(name))
    library.set_status(record("c").id, "quarantined")
    stats = library.stats()
    assert stats["by_status"] == {"active": 2, "archived": 0, "quarantined": 1}
    assert (stats["functions"], stats["total"], stats["embedder"]) == (2, 3, embedder.name)
    asked = [filters_of(r.filters) for r in fake.requests("Aggregate")]
    assert [a[0][2] for a in asked] == ["active", "archived", "quarantined"]


# -- tenants ----------------------------------------------------------------------------------------
def test_a_tenant_gets_a_multi_tenant_collection_and_every_request_names_it(
    fake: FakeWeaviate, embedder: TinyEmbedder
) -> None:
    config = fake.config(tenant="project-a")
    with WeaviateLibrary(embedder, config=config) as lib:
        rec = lib.add(record())
        lib.add_many([record("other")])
        lib.search("date", k=2)
        lib.record_use(rec.id, success=True)
    (create,) = fake.rest("POST", "/v1/schema")
    assert create.body["multiTenancyConfig"]["enabled"] is True
    (tenant,) = fake.rest("POST", rf"/v1/schema/{COLLECTION}/tenants")
    assert [t["name"] for t in tenant.body] == ["project-a"]
    assert fake.rest("PUT", r"/v1/objects/.*")[0].body["tenant"] == "project-a"
    assert fake.rest("PATCH", r"/v1/objects/.*")[0].body["tenant"] == "project-a"
    assert {r.tenant for r in fake.requests("Search")} == {"project-a"}
    assert {o.tenant for b in fake.requests("BatchObjects") for o in b.objects} == {"project-a"}
    assert set(fake.stored(COLLECTION, "project-a")) == {rec.id, record("other").id}
    assert fake.stored(COLLECTION) == {}

    with WeaviateLibrary(embedder, config=fake.config(tenant="project-b")) as lib:
        assert lib.list() == []  # another project sharing the cluster sees nothing
    assert len(fake.rest("POST", "/v1/schema")) == 1
    with pytest.raises(LibraryError, match="is multi-tenant: set library.weaviate.tenant"):
        WeaviateLibrary(embedder, config=fake.config())


def test_a_tenant_on_a_single_tenant_collection_is_refused(
    fake: FakeWeaviate, embedder: TinyEmbedder
) -> None:
    with WeaviateLibrary(embedder, config=fake.config()):
        pass
    with pytest.raises(LibraryError, match="not multi-tenant"):
        WeaviateLibrary(embedder, config=fake.config(tenant="project-a"))


# -- when the server is not there -----------------------------------------------------------------------
def test_an_unreachable_server_is_one_line_naming_the_url(embedder: TinyEmbedder) -> None:
    http_port, grpc_port = free_port(), free_port()
    config = WeaviateConfig(host="127.0.0.1", http_port=http_port, grpc_port=grpc_port)
    with pytest.raises(LibraryUnavailableError) as info:
        WeaviateLibrary(embedder, config=config)
    message = str(info.value)
    assert "\n" not in message
    assert f"http://127.0.0.1:{http_port}" in message and f":{grpc_port}" in message
    assert "docker compose up -d" in message


def test_rest_without_grpc_names_the_grpc_port(fake: FakeWeaviate, embedder: TinyEmbedder) -> None:
    closed = free_port()
    with pytest.raises(LibraryUnavailableError) as info:
        WeaviateLibrary(embedder, config=fake.config(grpc_port=closed))
    assert "\n" not in str(info.value)
    assert f"127.0.0.1:{closed}" in str(info.value) and "gRPC" in str(info.value)


def test_a_server_going_down_mid_run_raises_unavailable_then_recovers(
    library: WeaviateLibrary, fake: FakeWeaviate
) -> None:
    first = library.add(record("a"))
    fake.go_down()
    with pytest.raises(LibraryUnavailableError) as info:
        library.add(record("b"))
    assert "\n" not in str(info.value) and str(fake.http_port) in str(info.value)
    with pytest.raises(LibraryUnavailableError):
        library.set_status(first.id, "archived")
    fake.come_back()
    library.add(record("b"))  # the same client reconnects
    assert library.get(record("b").id) is not None


def test_reads_during_an_outage_fail_at_once_without_the_clients_grpc_retries(
    library: WeaviateLibrary, fake: FakeWeaviate, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = library.add(record())

    def no_backoff(seconds: float) -> None:
        raise AssertionError(f"the client went into its gRPC retry backoff ({seconds} s)")

    monkeypatch.setattr(weaviate.retry, "time", SimpleNamespace(sleep=no_backoff))
    fake.go_down()
    for read in (
        lambda: library.search("date", k=3),
        lambda: library.nearest("date", k=3),
        lambda: library.get(rec.id),
        lambda: library.get_by_name("parse_iso_date"),
        lambda: library.record_use(rec.id, success=True),
        lambda: library.stats(),
    ):
        with pytest.raises(LibraryUnavailableError, match="cannot reach Weaviate"):
            read()
    fake.come_back()
    assert library.get(rec.id) is not None


def test_close_is_idempotent(fake: FakeWeaviate, embedder: TinyEmbedder) -> None:
    lib = WeaviateLibrary(embedder, config=fake.config())
    lib.close()
    lib.close()


# -- configuration ------------------------------------------------------------------------------------
def test_config_modes_and_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    assert WeaviateConfig().describe() == "http://localhost:8080 (grpc :50051)"
    custom = WeaviateConfig(
        mode="custom", http_host="db.example", grpc_host="grpc.example", secure=True, http_port=443
    )
    assert custom.describe() == "https://db.example:443 (grpc grpc.example:50051)"
    cloud = WeaviateConfig(mode="cloud", url="https://abc.c0.europe-west3.gcp.weaviate.cloud")
    assert cloud.api_key_env == "WEAVIATE_API_KEY"
    with pytest.raises(ValidationError):
        WeaviateConfig(mode="cloud")
    with pytest.raises(ValidationError):
        WeaviateConfig(collection="lowercase_name")
    with pytest.raises(ValidationError):
        WeaviateConfig(tenant="has spaces")
    with pytest.raises(ValidationError):
        WeaviateConfig(hostname="typo")  # unknown keys are refused, not ignored
    monkeypatch.delenv("WEAVIATE_API_KEY", raising=False)
    with pytest.raises(LibraryError, match="set WEAVIATE_API_KEY"):
        WeaviateLibrary(TinyEmbedder(), config=cloud)


def test_the_config_mapping_as_options(fake: FakeWeaviate, embedder: TinyEmbedder) -> None:
    """What ``open_library("weaviate", embedder=..., **settings.library.weaviate)`` passes."""
    options = fake.config().model_dump(include={"host", "http_port", "grpc_port"})
    with WeaviateLibrary(embedder, **options) as lib:
        assert lib.config.http_port == fake.http_port
    with pytest.raises(LibraryError) as info:
        WeaviateLibrary(embedder, hostname="typo")
    assert str(info.value).startswith("library.weaviate.hostname:")
    with pytest.raises(LibraryError, match="library.weaviate.http_port"):
        WeaviateConfig.from_mapping({"http_port": "eighty"})


def test_the_shipped_config_file_is_a_valid_weaviate_config() -> None:
    data = yaml.safe_load((REPO / "configs" / "weaviate.yaml").read_text(encoding="utf-8"))
    assert data["library"]["backend"] == "weaviate"
    config = WeaviateConfig(**data["library"]["weaviate"])
    assert config.describe() == "http://localhost:8080 (grpc :50051)"


# -- the version rule (tools/library/weaviate_versions.py), without a server ----------------------
def test_settle_versions_numbers_one_to_n() -> None:
    from dynagraph.tools.library.weaviate_versions import settle_versions

    def rec(n: int, version: int, at: str, status: str = "active") -> FunctionRecord:
        return FunctionRecord(
            name="scale", code=f"def scale(): return {n}\n", ast_hash=f"h{n}",
            version=version, created_at=at, status=status,
        )  # fmt: skip

    writes: list[tuple[str, dict]] = []
    settled = [rec(1, 1, "t1", "archived"), rec(2, 2, "t2")]
    assert settle_versions(settled, lambda i, p: writes.append((i, p))) == settled and not writes
    gap = [rec(1, 1, "t1", "archived"), rec(2, 3, "t2")]
    assert [r.version for r in settle_versions(gap, lambda i, p: None)] == [1, 2]

    v1, a, b = rec(1, 1, "t1", "archived"), rec(2, 2, "t2"), rec(3, 2, "t3")
    ordered = settle_versions([b, v1, a], lambda i, p: writes.append((i, p)))
    assert [r.version for r in ordered] == [1, 2, 3] and ordered[2] is b
    assert b.supersedes == a.id and a.status == "archived" and b.status == "active"
    assert writes == [
        (a.id, {"status": "archived", "status_reason": a.status_reason}),
        (b.id, {"version": 3, "supersedes": a.id}),
    ]
    assert "superseded by v3" in a.status_reason

    # a stale writer re-sent a record with a version already given away: renumbered from 1
    x, y = rec(1, 2, "t1", "archived"), rec(2, 2, "t2")
    writes.clear()
    assert [r.version for r in settle_versions([y, x], lambda i, p: writes.append((i, p)))] == [
        1,
        2,
    ]
    assert (x.version, y.version, x.status, y.status) == (1, 2, "archived", "active")


def test_a_server_whose_shards_are_closing_is_unavailable_not_refusing() -> None:
    """Seen live (tests/e2e/test_weaviate_outage.py): a search sent while the server shuts down
    fails with "no read replica found"; that is an outage (queue and go on), not an error."""
    from dynagraph.tools.library.weaviate_connect import is_unavailable
    from weaviate.exceptions import WeaviateQueryError

    closing = WeaviateQueryError(
        "explorer: list class: search: object search at index dynagraphlog: no read replica found",
        "GRPC search",
    )
    unloaded = WeaviateQueryError(  # a little later in the same shutdown
        "explorer: list class: search: tried to browse non-existing index for DynagraphOutageLog",
        "GRPC search",
    )
    refused = WeaviateQueryError("explorer: no such class DynagraphLog", "GRPC search")
    assert is_unavailable(closing) and is_unavailable(unloaded) and not is_unavailable(refused)
