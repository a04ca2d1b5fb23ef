"""The outbox: writes made while the library's server is down are kept and sent, in order,
exactly once, when it answers again.

Most tests use :class:`FlakyServerLibrary`, an in-memory stand-in for a networked library that
can be switched off between two calls, which is how the outbox's ordering, rejection and
concurrency cases are reached in milliseconds; the last tests put the outbox in front of the
real Weaviate adapter talking to the fake Weaviate server over real sockets, stopped and
restarted. On a live server: tests/e2e/test_weaviate_outage.py (a server stopped mid-batch) and
tests/e2e/test_weaviate_shared.py (the journal's idempotent replay).
"""

from __future__ import annotations

import gc
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dynagraph.tools.codeparse import normalized_hash
from dynagraph.tools.library.base import FunctionRecord, LibraryError, SearchHit, record_id_for
from dynagraph.tools.library.outbox import LibraryUnavailableError, OutboxLibrary
from dynagraph.tools.library.weaviate import WeaviateLibrary
from dynagraph.tools.library.weaviate_open import open_weaviate_library

from tests.support.weaviate_fake import FakeWeaviate, TinyEmbedder

pytestmark = [
    pytest.mark.filterwarnings("error::ResourceWarning"),
    pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(autouse=True)
def _collect_garbage_after_each_test() -> Iterator[None]:
    yield
    gc.collect()


class FlakyServerLibrary:
    """A library server that can be switched off at will: an in-memory FunctionLibrary whose
    ``down`` flag makes every call raise LibraryUnavailableError, as the Weaviate adapter does
    when its server is unreachable. ``calls`` logs the writes that reached it, in order;
    ``refuse`` holds record names it answers with a (non-outage) LibraryError; ``down_after``
    lets it fail after that many more writes; ``slow`` widens race windows."""

    embedder_name = "test/flaky"

    def __init__(self) -> None:
        self.records: dict[str, FunctionRecord] = {}
        self.calls: list[tuple[str, Any]] = []
        self.down = False
        self.down_after: int | None = None
        self.refuse: set[str] = set()
        self.slow = 0.0
        self.lock = threading.Lock()
        self.tasks: dict[str, str] = {}  # task id -> time
        self.log: dict[str, dict[str, Any]] = {}  # decision id -> entry
        self.closed = False

    def _reach(self) -> None:
        if self.down_after is not None:
            if self.down_after == 0:
                self.down = True
            self.down_after -= 1
        if self.down:
            raise LibraryUnavailableError("cannot reach the test server at http://test:1")

    def add(self, record: FunctionRecord) -> FunctionRecord:
        self._reach()
        if record.name in self.refuse:
            raise LibraryError(f"server refused {record.name}: invalid property")
        time.sleep(self.slow)
        with self.lock:
            self.calls.append(("add", record.name))
            self.records[record.id] = FunctionRecord.from_dict(record.to_dict())
        return record

    def get(self, record_id: str) -> FunctionRecord | None:
        self._reach()
        return self.records.get(record_id)

    def get_by_name(self, name: str, *, include_inactive: bool = False) -> FunctionRecord | None:
        self._reach()
        found = [r for r in self.records.values() if r.name == name]
        return max(found, key=lambda r: r.version) if found else None

    def versions(self, name: str) -> list[FunctionRecord]:
        self._reach()
        return sorted((r for r in self.records.values() if r.name == name), key=lambda r: r.version)

    def find_by_hash(self, ast_hash: str) -> FunctionRecord | None:
        self._reach()
        return next((r for r in self.records.values() if r.ast_hash == ast_hash), None)

    def search(self, query: str, k: int = 5, **options: Any) -> list[SearchHit]:
        self._reach()
        return [SearchHit(r, 1.0) for r in self.records.values()][:k]

    def nearest(self, text: str, k: int = 5, **options: Any) -> list[SearchHit]:
        return self.search(text, k)

    def record_use(self, record_id: str, *, success: bool, task_index: int | None = None) -> None:
        self._reach()
        with self.lock:
            self.calls.append(("record_use", record_id))
            self.records[record_id].uses += 1

    def record_retrieved(self, record_ids: Iterable[str]) -> None:
        self._reach()
        with self.lock:
            self.calls.append(("record_retrieved", list(record_ids)))

    def set_status(self, record_id: str, status: str, reason: str = "") -> None:
        self._reach()
        with self.lock:
            self.calls.append(("set_status", status))
            self.records[record_id].status = status

    def list(self, *, status: str | None = None) -> list[FunctionRecord]:
        self._reach()
        return list(self.records.values())

    def stats(self) -> dict[str, Any]:
        self._reach()
        return {"total": len(self.records)}

    # the journal, as the Weaviate library keeps it: one object per uuid the writer fixed
    def next_task_index(self, *, at: str, task_id: str) -> int:
        self._reach()
        with self.lock:
            self.tasks[task_id] = at
            return sum(t <= at for t in self.tasks.values())

    def task_index(self) -> int:
        self._reach()
        return len(self.tasks)

    def log_decisions(self, entries: list[dict[str, Any]], *, at: str, ids: list[str]) -> None:
        self._reach()
        with self.lock:
            for object_id, entry in zip(ids, entries, strict=True):
                self.log.setdefault(object_id, entry)

    def decision_log(self, *, limit: int = 100, name: str | None = None) -> list[dict[str, Any]]:
        self._reach()
        return list(self.log.values())[-limit:]

    def thread_decisions(self, thread: str) -> list[dict[str, Any]]:
        self._reach()
        return [e for e in self.log.values() if e.get("thread") == thread]

    def close(self) -> None:
        self.closed = True


def rec(name: str, **fields: Any) -> FunctionRecord:
    """A record that passes the integrity check (its id derives from its code's hash)."""
    code = f"def {name}():\n    return {name!r}\n"
    return FunctionRecord(name=name, code=code, ast_hash=normalized_hash(code), **fields)


@pytest.fixture
def server() -> FlakyServerLibrary:
    return FlakyServerLibrary()


@pytest.fixture
def outbox_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "outbox.db"


@pytest.fixture
def library(server: FlakyServerLibrary, outbox_path: Path) -> Iterator[OutboxLibrary]:
    with OutboxLibrary(server, outbox_path) as lib:
        yield lib


def test_writes_pass_straight_through_while_the_server_is_up(
    library: OutboxLibrary, server: FlakyServerLibrary
) -> None:
    stored = library.add(rec("a"))
    library.record_use(stored.id, success=True)
    assert server.calls == [("add", "a"), ("record_use", stored.id)]
    assert library.outbox.count() == 0


def test_writes_while_down_are_queued_then_flushed_in_order_exactly_once(
    library: OutboxLibrary, server: FlakyServerLibrary, outbox_path: Path
) -> None:
    server.down = True
    a, b = rec("a"), rec("b")
    assert library.add(a).to_dict() == a.to_dict()  # the agent carries on with its record
    library.add(b)
    library.record_use(a.id, success=True, task_index=3)
    library.set_status(b.id, "archived", "superseded")
    library.record_retrieved([])  # nothing to count: not even queued
    assert server.calls == []
    assert library.outbox.count() == 4
    with sqlite3.connect(outbox_path) as conn:  # durable: in the file, not in memory
        assert conn.execute("SELECT COUNT(*) FROM pending").fetchone() == (4,)

    report = library.flush()
    assert (report.sent, report.remaining, report.complete) == (0, 4, False)
    assert "cannot reach the test server" in (report.stopped_by or "")

    server.down = False
    report = library.flush()
    assert (report.sent, report.remaining, report.rejected) == (4, 0, [])
    assert server.calls == [
        ("add", "a"),
        ("add", "b"),
        ("record_use", a.id),
        ("set_status", "archived"),
    ]
    assert library.flush().sent == 0  # exactly once
    assert server.records[a.id].uses == 1 and server.records[b.id].status == "archived"
    assert "sent 0 queued change(s), 0 left" in library.flush().summary()


def test_a_new_write_waits_behind_the_queue(
    library: OutboxLibrary, server: FlakyServerLibrary
) -> None:
    server.down = True
    library.add(rec("first"))
    server.down = False
    library.add(rec("second"))  # flushes "first" before sending itself
    assert server.calls == [("add", "first"), ("add", "second")]
    assert library.outbox.count() == 0


def test_an_outage_during_a_flush_keeps_the_rest_in_order(
    library: OutboxLibrary, server: FlakyServerLibrary
) -> None:
    server.down = True
    for name in ("a", "b", "c", "d"):
        library.add(rec(name))
    server.down, server.down_after = False, 2  # answers twice, then goes away again
    report = library.flush()
    assert (report.sent, report.remaining) == (2, 2)
    library.add(rec("e"))  # still down: queued behind c and d
    server.down, server.down_after = False, None
    assert library.flush().sent == 3
    assert [name for _, name in server.calls] == ["a", "b", "c", "d", "e"]


def test_the_queue_is_flushed_when_the_next_run_opens_it(
    server: FlakyServerLibrary, outbox_path: Path
) -> None:
    server.down = True
    with OutboxLibrary(server, outbox_path) as first_run:
        first_run.add(rec("a"))
        assert first_run.last_flush is not None and first_run.last_flush.sent == 0
    server.down = False
    with OutboxLibrary(server, outbox_path) as next_run:
        assert next_run.last_flush is not None and next_run.last_flush.sent == 1
        assert next_run.outbox.count() == 0
    assert server.calls == [("add", "a")]


def test_a_change_the_server_refuses_is_set_aside_not_retried_forever(
    library: OutboxLibrary, server: FlakyServerLibrary, outbox_path: Path
) -> None:
    server.down = True
    library.add(rec("good"))
    library.add(rec("bad"))
    library.add(rec("also_good"))
    server.down = False
    server.refuse = {"bad"}
    report = library.flush()
    assert report.sent == 2 and report.remaining == 0
    assert len(report.rejected) == 1 and "server refused bad" in report.rejected[0]
    assert [name for _, name in server.calls] == ["good", "also_good"]
    assert [op for _, op, _ in library.outbox.rejected()] == ["add"]
    assert "1 rejected by the server" in report.summary()
    assert library.stats()["outbox_rejected"] == 1


def test_lookups_while_down_see_queued_adds(
    library: OutboxLibrary, server: FlakyServerLibrary
) -> None:
    server.down = True
    v1 = rec("median", version=1, aliases=["middle"])
    v2 = FunctionRecord(name="median", code="def median(): return 2\n", ast_hash="h2", version=2)
    library.add(v1)
    library.add(v2)
    assert library.get(v1.id).to_dict() == v1.to_dict()  # type: ignore[union-attr]
    assert library.find_by_hash("h2").id == v2.id  # type: ignore[union-attr]
    assert library.get_by_name("median").id == v2.id  # type: ignore[union-attr]
    assert library.get_by_name("middle").id == v1.id  # type: ignore[union-attr]
    with pytest.raises(LibraryUnavailableError):
        library.get(record_id_for("never-added"))  # not "None": we cannot know
    with pytest.raises(LibraryUnavailableError):
        library.search("median")
    server.down = False
    assert [h.record.name for h in library.search("median")] == ["median", "median"]


def test_two_processes_flushing_one_outbox_send_each_change_once(
    server: FlakyServerLibrary, outbox_path: Path
) -> None:
    server.down = True
    with OutboxLibrary(server, outbox_path) as lib:
        for i in range(12):
            lib.add(rec(f"f{i}"))
    server.down = False
    server.slow = 0.01  # each send takes a while: both flushers are mid-queue together
    # two libraries = two SQLite connections to one file, as two processes would have
    libs = [OutboxLibrary(server, outbox_path, flush_on_open=False) for _ in range(2)]
    try:
        threads = [threading.Thread(target=lib.flush) for lib in libs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(lib.last_flush.sent for lib in libs) == 12  # type: ignore[union-attr]
    finally:
        for lib in libs:
            lib.close()
    assert [name for _, name in server.calls] == [f"f{i}" for i in range(12)]


def test_an_outbox_holding_changes_for_another_target_refuses_to_open(
    server: FlakyServerLibrary, outbox_path: Path
) -> None:
    server.down = True
    with OutboxLibrary(server, outbox_path, target="Weaviate A collection X") as lib:
        lib.add(rec("a"))
    with pytest.raises(LibraryError) as info:
        OutboxLibrary(server, outbox_path, target="Weaviate B collection Y")
    message = str(info.value)
    assert "\n" not in message and "Weaviate A collection X" in message
    assert "dynagraph library sync" in message
    server.down = False
    with OutboxLibrary(server, outbox_path, target="Weaviate A collection X") as lib:
        assert lib.outbox.count() == 0  # flushed where it belonged
    with OutboxLibrary(server, outbox_path, target="Weaviate B collection Y") as lib:
        lib.add(rec("b"))  # an empty outbox may serve another target
    assert [name for _, name in server.calls] == ["a", "b"]


def test_stats_report_the_queue(library: OutboxLibrary, server: FlakyServerLibrary) -> None:
    server.down = True
    library.add(rec("a"))
    with pytest.raises(LibraryUnavailableError):
        library.stats()
    server.down, server.down_after = False, 0  # the flush inside stats() meets the outage
    with pytest.raises(LibraryUnavailableError):
        library.stats()
    server.down, server.down_after = False, None
    stats = library.stats()
    assert stats["outbox_pending"] == 0 and stats["total"] == 1
    assert stats["outbox_path"].endswith("outbox.db")


def test_the_journal_waits_in_the_queue_and_is_sent_once(
    library: OutboxLibrary, server: FlakyServerLibrary
) -> None:
    assert library.next_task_index() == 1  # up: counted by the server
    server.down = True
    assert [library.next_task_index(), library.next_task_index()] == [2, 3]  # estimates
    library.log_decisions([{"name": "f", "action": "added"}])
    library.log_decisions([])  # nothing to log: not even queued
    with pytest.raises(LibraryError):
        library.log_decisions([{"name": "g"}])  # refused now, not queued to be rejected later
    assert [op for _, op, _ in library.outbox.pending()] == [
        "count_task", "count_task", "log_decisions",
    ]  # fmt: skip
    with pytest.raises(LibraryUnavailableError):
        library.task_index()
    server.down = False
    assert library.task_index() == 3  # the queue is sent before the server is asked
    queued = library.outbox.pending()
    assert queued == [] and library.decision_log() == [{"name": "f", "action": "added"}]
    # a change sent again (its acknowledgement lost) is stored once: the ids were fixed
    server.down = True
    library.next_task_index()
    library.log_decisions([{"name": "h", "action": "added"}])
    replay = library.outbox.pending()
    server.down = False
    for _, op, payload in replay * 2:
        library._apply(op, payload)
    assert library.task_index() == 4 and len(library.decision_log()) == 2


def test_close_closes_the_primary(server: FlakyServerLibrary, outbox_path: Path) -> None:
    OutboxLibrary(server, outbox_path).close()
    assert server.closed


# -- against the Weaviate adapter and the fake server -------------------------------------------------
def test_weaviate_down_then_back_loses_nothing(tmp_path: Path) -> None:
    records = [rec("parse_date"), rec("slugify")]
    with FakeWeaviate() as fake:
        config = fake.config()
        with open_weaviate_library(TinyEmbedder(), config, tmp_path / "outbox.db") as lib:
            lib.add(records[0])
            fake.go_down()
            stored = lib.add(records[1])  # refused connection: queued, not raised
            lib.record_use(records[0].id, success=True, task_index=2)
            assert stored.name == "slugify" and lib.outbox.count() == 2
            fake.come_back()
            report = lib.flush()
            assert (report.sent, report.remaining) == (2, 0)
        objects = fake.stored(config.collection)
        assert set(objects) == {r.id for r in records}
        assert objects[records[0].id].properties["uses"] == 1
        assert objects[records[1].id].vectors["doc"]  # embedded and sent at flush time


def test_weaviate_queue_left_by_a_crashed_run_is_flushed_at_the_next_open(tmp_path: Path) -> None:
    record = rec("is_prime")
    outbox = tmp_path / "outbox.db"
    with FakeWeaviate() as fake:
        with open_weaviate_library(TinyEmbedder(), fake.config(), outbox) as lib:
            fake.go_down()
            lib.add(record)
        fake.come_back()
        with open_weaviate_library(TinyEmbedder(), fake.config(), outbox) as lib:
            assert lib.last_flush is not None and lib.last_flush.sent == 1
            assert lib.get(record.id) is not None
        assert record.id in fake.stored("DynagraphFunction")


def test_weaviate_unreachable_at_open_is_one_line(tmp_path: Path) -> None:
    with FakeWeaviate() as fake:
        config = fake.config()
    with pytest.raises(LibraryUnavailableError) as info:  # the server is gone
        open_weaviate_library(TinyEmbedder(), config, tmp_path / "outbox.db")
    assert "\n" not in str(info.value) and f":{config.http_port}" in str(info.value)


def test_weaviate_library_under_the_outbox_is_still_a_library(tmp_path: Path) -> None:
    with FakeWeaviate() as fake:
        primary = WeaviateLibrary(TinyEmbedder(), config=fake.config())
        with OutboxLibrary(primary, tmp_path / "outbox.db") as lib:
            assert lib.embedder_name == TinyEmbedder.name
            stored = lib.add(rec("a"))
            assert lib.get(stored.id) is not None
            assert lib.stats()["outbox_pending"] == 0


def test_a_thread_finds_its_decisions_while_the_server_is_down(
    library: OutboxLibrary, server: FlakyServerLibrary
) -> None:
    """A task resumed during an outage still skips what it decided: from the queue, then from
    the server once it answers."""
    server.down = True
    library.log_decisions([{"name": "f", "action": "added", "thread": "t-1"}])
    library.log_decisions([{"name": "g", "action": "added", "thread": "t-2"}])
    with pytest.raises(LibraryUnavailableError):  # not a run: a partial answer is not given
        library.thread_decisions("t-1")
    library.admit_offline = True  # as a run opens it (open_weaviate_library)
    assert [e["name"] for e in library.thread_decisions("t-1")] == ["f"]
    server.down = False
    assert [e["name"] for e in library.thread_decisions("t-2")] == ["g"]
    assert library.outbox.count() == 0  # the read flushed the queue first
