"""The SQLite library's journal (tools/library/ledger.py): the task counter stays atomic across
threads and connections and persists; a batch of decisions with one bad entry writes nothing.
(The journal's behaviour on every backend is in tests/contract/library_contract.py.)"""

from __future__ import annotations

import threading

import pytest
from dynagraph.tools.library import LibraryError, SqliteLibrary

from tests.support.weaviate_fake import TinyEmbedder


def test_counter_is_atomic_across_connections_and_persistent(tmp_path):
    path = tmp_path / "lib.db"
    libraries = [SqliteLibrary(path, TinyEmbedder()) for _ in range(2)]
    seen: list[int] = []
    lock = threading.Lock()

    def work(library: SqliteLibrary) -> None:
        for _ in range(25):
            value = library.next_task_index()
            with lock:
                seen.append(value)

    threads = [threading.Thread(target=work, args=(libraries[i % 2],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for library in libraries:
        library.close()
    assert sorted(seen) == list(range(1, 101))
    with SqliteLibrary(path, TinyEmbedder()) as again:
        assert again.task_index() == 100


def test_a_batch_with_a_bad_decision_writes_nothing(tmp_path):
    with SqliteLibrary(tmp_path / "lib.db", TinyEmbedder()) as library:
        library.log_decisions([{"name": "f", "action": "added"}])
        with pytest.raises(LibraryError):
            library.log_decisions([{"name": "x", "action": "added"}, {"name": "y"}])
        assert library.decision_log() == [{"name": "f", "action": "added"}]
