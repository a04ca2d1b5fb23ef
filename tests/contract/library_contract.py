"""The behaviour every function-library backend must show, written once for all of them.

A backend's test module subclasses :class:`LibraryContract` and provides one fixture,
``library_factory``: a callable returning a new, empty library (with the real embedder), whose
libraries the fixture closes and cleans up afterwards. The tests here use only the
:class:`~tools.library.base.FunctionLibrary` protocol and the helpers of ``base.py``, so the SQLite
and Weaviate backends run this class unchanged.

The corpus is ~20 small, distinct functions of the kind the agent writes; the search tests ask
for them in other words than their docstrings use, as the coder does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from dynagraph.tools.library.base import (
    FunctionLibrary,
    FunctionRecord,
    LibraryError,
    SearchHit,
    archive,
    export_jsonl,
    record_id_for,
)
from dynagraph.tools.library.jsonl import import_jsonl

# (name, signature, docstring, origin task, tags)
CORPUS: list[tuple[str, str, str, str, list[str]]] = [
    ("parse_iso_date", "(text: str) -> datetime.date",
     "Parse an ISO-8601 date string such as 2024-03-01 into a date object.",
     "How many days are there between 2024-03-01 and 2024-04-15?", ["dates"]),
    ("celsius_to_fahrenheit", "(celsius: float) -> float",
     "Convert a temperature from degrees Celsius to degrees Fahrenheit.",
     "The thermometer in Paris shows 21 C. What is that in Fahrenheit?", ["units", "math"]),
    ("median_of_column", "(df: pd.DataFrame, column: str) -> float",
     "Return the median of the numbers in one column of a DataFrame.",
     "A juice shop sold 12, 15, 9, 20 and 14 smoothies. What is the median?", ["tables", "math"]),
    ("count_words", "(text: str) -> int",
     "Count the words in a text, splitting on whitespace.",
     "How long is this essay in words?", ["text"]),
    ("fetch_url_text", "(url: str, timeout: float = 10.0) -> str",
     "Download a web page over HTTP and return its text content.",
     "What does the homepage of example.org say?", ["web"]),
    ("read_csv_table", "(path: str) -> pd.DataFrame",
     "Load a CSV file into a pandas DataFrame.",
     "Open sales.csv and show the first rows.", ["tables", "files"]),
    ("is_prime", "(n: int) -> bool",
     "Tell whether an integer is a prime number.",
     "Is 7919 prime?", ["math"]),
    ("compound_interest", "(principal: float, rate: float, years: int) -> float",
     "Future value of an investment with interest compounded once a year.",
     "I put 1000 dollars in a bank at 3% a year. How much after 5 years?", ["finance", "math"]),
    ("haversine_km", "(lat1: float, lon1: float, lat2: float, lon2: float) -> float",
     "Great-circle distance in kilometres between two latitude/longitude points.",
     "How far is Berlin from Madrid as the crow flies?", ["geo", "math"]),
    ("extract_emails", "(text: str) -> list[str]",
     "Find all e-mail addresses in a piece of text with a regular expression.",
     "List the contact addresses mentioned in this press release.", ["text", "regex"]),
    ("percent_change", "(old: float, new: float) -> float",
     "Percentage increase or decrease from an old value to a new value.",
     "Rent went from 800 to 920. By what percentage did it rise?", ["math", "finance"]),
    ("stem_and_leaf_values", "(df: pd.DataFrame) -> list[int]",
     "Expand a stem-and-leaf plot table into the list of numbers it represents.",
     "The stem-and-leaf plot shows test scores. How many scored at least 70?", ["tables"]),
    ("slugify", "(title: str) -> str",
     "Turn a title into a lowercase URL slug with words joined by hyphens.",
     "Make a web address fragment for the post 'Hello World, Again!'.", ["text", "web"]),
    ("roman_to_int", "(numeral: str) -> int",
     "Convert a Roman numeral like XIV to an integer.",
     "Which year is MCMLXXXIV?", ["math", "text"]),
    ("flatten_list", "(nested: list) -> list",
     "Flatten an arbitrarily nested list into one flat list.",
     "Turn [[1, [2, 3]], 4] into a single list.", ["lists"]),
    ("word_frequencies", "(text: str, top_n: int = 10) -> list[tuple[str, int]]",
     "The most common words of a text with their counts.",
     "Which words appear most often in this speech?", ["text"]),
    ("shopping_total", "(prices: dict[str, float], quantities: dict[str, int]) -> float",
     "Total price of a shopping list given unit prices and quantities.",
     "Apples cost 0.5 each and bread 2.25. What do 6 apples and 2 loaves cost?", ["finance"]),
    ("sha256_of_file", "(path: str) -> str",
     "Hex SHA-256 digest of a file's bytes.",
     "Verify the checksum of the downloaded installer.", ["files"]),
    ("mode_of_values", "(values: list) -> list",
     "The most frequent value or values of a list.",
     "Which shoe size was sold most often?", ["math", "lists"]),
    ("gcd_of_list", "(numbers: list[int]) -> int",
     "Greatest common divisor of a list of integers.",
     "What is the largest number that divides 84, 126 and 210?", ["math"]),
]  # fmt: skip

# A query in other words than the docstring, and the function it should find in the top 3.
PARAPHRASES: list[tuple[str, str]] = [
    ("how far apart are two cities given their GPS coordinates", "haversine_km"),
    ("turn 30 degrees centigrade into the American temperature scale", "celsius_to_fahrenheit"),
    ("what will my savings be worth after ten years at 5% yearly", "compound_interest"),
    ("pull out every mail address from this paragraph", "extract_emails"),
    ("middle value of a table column", "median_of_column"),
    ("check that a number has no divisors other than one and itself", "is_prime"),
    ("checksum fingerprint of a file on disk", "sha256_of_file"),
    ("by how much did the price go up, in percent", "percent_change"),
    ("the value that occurs most often", "mode_of_values"),
    ("get the HTML page behind a link", "fetch_url_text"),
]

HOSTILE_QUERIES = [
    'a "b',
    "NOT",
    "*",
    "",
    "   ",
    '""',
    "AND OR NOT NEAR(a b, 2)",
    "name:foo ^bar -baz +qux",
    "'; DROP TABLE functions; --",
    "{col1 col2}: x",
    "_ __ ___",
    "(((",
    "\x00\x01 \\ %s %d {}",
    "日本語のクエリ ümlaut émoji 🎉",
    "x" * 5000,
    " ".join(f"w{i}" for i in range(200)),
]


def make_record(
    name: str,
    *,
    docstring: str = "",
    signature: str = "()",
    origin_task: str = "",
    tags: list[str] | None = None,
    version: int = 1,
    code: str | None = None,
    **fields: object,
) -> FunctionRecord:
    """A record whose code (and so its hash and id) is determined by name, version and doc."""
    code = code or f'def {name}{signature.split(" ->")[0]}:\n    """{docstring}"""\n    ...\n'
    return FunctionRecord(
        name=name,
        code=code,
        ast_hash=hashlib.sha256(f"{version}\n{code}".encode()).hexdigest(),
        signature=signature,
        docstring=docstring,
        origin_task=origin_task,
        tags=list(tags or []),
        version=version,
        **fields,  # type: ignore[arg-type]
    )


def corpus_records() -> list[FunctionRecord]:
    return [
        make_record(name, signature=sig, docstring=doc, origin_task=task, tags=tags)
        for name, sig, doc, task, tags in CORPUS
    ]


def names_of(hits: list[SearchHit]) -> list[str]:
    return [hit.record.name for hit in hits]


class LibraryContract:
    """Subclass with a ``library_factory`` fixture: ``() -> FunctionLibrary`` (new, empty)."""

    @pytest.fixture
    def library(self, library_factory: Callable[[], FunctionLibrary]) -> FunctionLibrary:
        return library_factory()

    @pytest.fixture
    def corpus(self, library: FunctionLibrary) -> dict[str, FunctionRecord]:
        """The library filled with CORPUS; returns the stored records by name."""
        return {r.name: library.add(r) for r in corpus_records()}

    # -- records ---------------------------------------------------------------------------------
    def test_satisfies_protocol(self, library: FunctionLibrary) -> None:
        assert isinstance(library, FunctionLibrary)
        assert library.embedder_name

    def test_add_get_round_trip_keeps_every_field(self, library: FunctionLibrary) -> None:
        record = FunctionRecord(
            name="table_column_mean",
            code="def table_column_mean(df, col):\n    return float(df[col].mean())\n",
            ast_hash="9f2c0a7e1d",
            signature="(df: pd.DataFrame, col: str) -> float",
            docstring="Mean of one column.\n\nNaN values are skipped — like pandas.",
            imports=["import pandas as pd", "from statistics import mean as avg"],
            globals=["DEFAULT_COL = 'price'"],
            depends_on=["clean_numbers"],
            origin_task="What is the average price in the table? (€, ünïcode)",
            origin_thread="thread-42",
            origin_model="gpt-4o",
            probes=[
                {"args": [[1, 2]], "kwargs": {"col": "x"}, "result": 1.5, "nested": {"a": None}}
            ],
            tags=["tables", "math"],
            aliases=["column_mean", "mean_of_column"],
            version=3,
            uses=5,
            retrieved=7,
            successes=4,
            status="active",
            status_reason="restored after review",
            supersedes=record_id_for("older-hash"),
            created_at="2025-01-02T03:04:05+00:00",
            last_used_task=9,
        )
        expected = record.to_dict()
        stored = library.add(record)
        assert stored.to_dict() == expected
        fetched = library.get(record.id)
        assert fetched is not None
        assert fetched.to_dict() == expected

    def test_id_is_uuid5_of_hash_and_unknown_id_is_none(self, library: FunctionLibrary) -> None:
        stored = library.add(make_record("f", docstring="Return one."))
        assert stored.id == record_id_for(stored.ast_hash)
        assert library.get(record_id_for("no-such-hash")) is None

    def test_upsert_replaces_without_duplicates(self, library: FunctionLibrary) -> None:
        record = make_record("count_words", docstring="Count the words of a text.")
        library.add(record)
        library.add(record)
        changed = FunctionRecord.from_dict(
            {**record.to_dict(), "docstring": "Number of whitespace-separated tokens.", "uses": 3}
        )
        library.add(changed)
        assert [r.id for r in library.list()] == [record.id]
        stored = library.get(record.id)
        assert stored is not None
        assert stored.docstring == "Number of whitespace-separated tokens."
        assert stored.uses == 3  # counters are stored as given
        assert library.stats()["total"] == 1
        assert len(library.search("count words tokens", k=10)) == 1

    def test_upsert_replaces_keyword_text(self, library: FunctionLibrary) -> None:
        record = make_record("f", docstring="Uses the zanzibar algorithm.")
        library.add(record)
        assert names_of(library.search("zanzibar", alpha=0.0)) == ["f"]
        library.add(
            FunctionRecord.from_dict({**record.to_dict(), "docstring": "Uses the quokka method."})
        )
        assert library.search("zanzibar", alpha=0.0) == []
        assert names_of(library.search("quokka", alpha=0.0)) == ["f"]

    def test_get_by_name_returns_newest_active_version(self, library: FunctionLibrary) -> None:
        v1 = library.add(make_record("median", docstring="Median, sorting.", version=1))
        v2 = library.add(make_record("median", docstring="Median, with statistics.", version=2))
        other = library.add(make_record("mean", docstring="Mean."))
        found = library.get_by_name("median")
        assert found is not None and found.id == v2.id
        archive(library, v2.id, "superseded in a test")
        found = library.get_by_name("median")
        assert found is not None and found.id == v1.id
        found = library.get_by_name("median", include_inactive=True)
        assert found is not None and found.id == v2.id
        assert library.get_by_name("no_such_function") is None
        assert library.get_by_name("mean").id == other.id  # type: ignore[union-attr]

    def test_get_by_name_breaks_version_ties_by_created_at(self, library: FunctionLibrary) -> None:
        newer = make_record("f", docstring="B.", created_at="2025-06-01T00:00:00+00:00")
        older = make_record("f", docstring="A.", created_at="2025-01-01T00:00:00+00:00")
        library.add(newer)
        library.add(older)
        assert library.get_by_name("f").id == newer.id  # type: ignore[union-attr]

    def test_get_by_name_finds_aliases(self, library: FunctionLibrary) -> None:
        stored = library.add(
            make_record("average_of_list", docstring="Mean of a list.", aliases=["mean_of", "avg"])
        )
        for name in ("average_of_list", "mean_of", "avg"):
            found = library.get_by_name(name)
            assert found is not None and found.id == stored.id

    def test_versions_oldest_first(self, library: FunctionLibrary) -> None:
        for version in (2, 3, 1):
            library.add(make_record("f", docstring=f"Version {version}.", version=version))
        library.add(make_record("g", docstring="Another function."))
        assert [r.version for r in library.versions("f")] == [1, 2, 3]
        assert library.versions("nothing") == []

    def test_find_by_hash(self, library: FunctionLibrary) -> None:
        stored = library.add(make_record("f", docstring="Return one."))
        library.add(make_record("g", docstring="Return two."))
        found = library.find_by_hash(stored.ast_hash)
        assert found is not None and found.id == stored.id
        assert library.find_by_hash("absent") is None

    # -- search ----------------------------------------------------------------------------------
    def test_search_finds_paraphrased_function_in_top_3(
        self, library: FunctionLibrary, corpus: dict[str, FunctionRecord]
    ) -> None:
        misses = {}
        for query, expected in PARAPHRASES:
            top = names_of(library.search(query, k=3))
            if expected not in top:
                misses[query] = (expected, top)
        assert not misses, misses

    def test_search_hits_are_sorted_and_carry_both_scores(
        self, library: FunctionLibrary, corpus: dict[str, FunctionRecord]
    ) -> None:
        hits = library.search("convert a Roman numeral to an integer", k=5)
        assert names_of(hits)[0] == "roman_to_int"
        scores = [hit.score for hit in hits]
        assert scores == sorted(scores, reverse=True)
        assert hits[0].vector_score > 0 and hits[0].keyword_score > 0
        assert len({hit.record.id for hit in hits}) == len(hits)

    def test_keyword_only_search_finds_exact_identifier(
        self, library: FunctionLibrary, corpus: dict[str, FunctionRecord]
    ) -> None:
        for identifier in ("stem_and_leaf_values", "sha256_of_file", "gcd_of_list"):
            hits = library.search(identifier, k=3, alpha=0.0)
            assert names_of(hits)[0] == identifier
            assert all(hit.keyword_score > 0 for hit in hits)

    def test_keyword_only_search_returns_only_matches(
        self, library: FunctionLibrary, corpus: dict[str, FunctionRecord]
    ) -> None:
        assert library.search("xylophonist", k=5, alpha=0.0) == []

    def test_vector_only_search(
        self, library: FunctionLibrary, corpus: dict[str, FunctionRecord]
    ) -> None:
        hits = library.search("distance between two places on Earth", k=3, alpha=1.0)
        assert "haversine_km" in names_of(hits)
        assert all(hit.vector_score > 0 for hit in hits)
        # no word in common with any record: keywords find nothing, vectors find it
        assert library.search("warmth conversion", k=3, alpha=0.0) == []
        hits = library.search("warmth conversion", k=3, alpha=1.0)
        assert "celsius_to_fahrenheit" in names_of(hits)

    def test_status_filter_hides_archived_and_quarantined(
        self, library: FunctionLibrary, corpus: dict[str, FunctionRecord]
    ) -> None:
        query = "great-circle distance between latitude longitude points"
        target, other = corpus["haversine_km"], corpus["slugify"]
        library.set_status(target.id, "archived", "replaced")
        library.set_status(other.id, "quarantined", "failed its probes")
        everything = library.search(query, k=50, alpha=0.5)
        assert target.id not in {h.record.id for h in everything}
        assert other.id not in {h.record.id for h in everything}
        assert library.get_by_name("haversine_km") is None
        assert library.get(target.id).status == "archived"  # type: ignore[union-attr]
        assert library.get(target.id).status_reason == "replaced"  # type: ignore[union-attr]

        archived = library.search(query, k=50, status="archived")
        assert [h.record.id for h in archived] == [target.id]
        any_status = library.search(query, k=3, status=None)
        assert names_of(any_status)[0] == "haversine_km"
        quarantined = library.nearest(other.doc_view(), k=5, status="quarantined")
        assert [h.record.id for h in quarantined] == [other.id]

        library.set_status(target.id, "active")
        assert names_of(library.search(query, k=3))[0] == "haversine_km"
        assert library.get_by_name("haversine_km") is not None

    def test_set_status_rejects_unknown_status_and_id(
        self, library: FunctionLibrary, corpus: dict[str, FunctionRecord]
    ) -> None:
        with pytest.raises(LibraryError):
            library.set_status(corpus["is_prime"].id, "deleted")
        with pytest.raises(LibraryError):
            library.set_status(record_id_for("absent"), "archived")
        assert library.get(corpus["is_prime"].id).status == "active"  # type: ignore[union-attr]

    def test_tags_filter_requires_every_tag(
        self, library: FunctionLibrary, corpus: dict[str, FunctionRecord]
    ) -> None:
        text_hits = library.search("process some text", k=50, tags=["text"])
        expected = {r.name for r in corpus.values() if "text" in r.tags}
        assert set(names_of(text_hits)) == expected
        both = library.search("process some text", k=50, tags=["text", "regex"])
        assert names_of(both) == ["extract_emails"]
        assert library.search("anything", k=50, tags=["text", "no-such-tag"]) == []

    def test_nearest_uses_the_docstring_view(
        self, library: FunctionLibrary, corpus: dict[str, FunctionRecord]
    ) -> None:
        target = corpus["flatten_list"]
        hits = library.nearest(target.doc_view(), k=3)
        assert hits[0].record.id == target.id
        assert hits[0].score > 0.95
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        paraphrase = library.nearest("def flatten(xs): make a nested list flat", k=3)
        assert "flatten_list" in names_of(paraphrase)

    def test_k_larger_than_the_library(
        self, library: FunctionLibrary, corpus: dict[str, FunctionRecord]
    ) -> None:
        hits = library.search("numbers", k=1000)
        assert sorted(names_of(hits)) == sorted(corpus)
        assert len(library.nearest("numbers", k=1000)) == len(corpus)
        assert library.search("numbers", k=0) == []

    def test_search_on_an_empty_library(self, library: FunctionLibrary) -> None:
        assert library.search("anything", k=5) == []
        assert library.search("anything", k=5, alpha=0.0) == []
        assert library.nearest("anything", k=5) == []
        assert library.get_by_name("anything") is None

    def test_hostile_queries_do_not_raise(
        self, library: FunctionLibrary, corpus: dict[str, FunctionRecord]
    ) -> None:
        for query in HOSTILE_QUERIES:
            for alpha in (0.0, 0.5):  # keywords alone, and both (alpha=1 reads no keywords)
                hits = library.search(query, k=5, alpha=alpha)
                assert len(hits) <= 5
        # an unbalanced quote is read as text: its words still match
        assert library.search('"roman numeral', k=3, alpha=0.0)[0].record.name == "roman_to_int"
        assert len(library.list()) == len(corpus)

    # -- counters, listing, export -----------------------------------------------------------------
    def test_record_use_and_retrieved_count_atomically(
        self, library: FunctionLibrary, corpus: dict[str, FunctionRecord]
    ) -> None:
        target = corpus["is_prime"]
        library.record_use(target.id, success=True, task_index=4)
        library.record_use(target.id, success=False, task_index=7)
        library.record_use(target.id, success=True)
        library.record_retrieved([target.id, corpus["slugify"].id, target.id])
        library.record_retrieved([])
        stored = library.get(target.id)
        assert stored is not None
        assert (stored.uses, stored.successes, stored.retrieved) == (3, 2, 2)
        assert stored.last_used_task == 7  # a use without a task index keeps the last one
        assert library.get(corpus["slugify"].id).retrieved == 1  # type: ignore[union-attr]
        untouched = library.get(corpus["gcd_of_list"].id)
        assert untouched is not None
        assert (untouched.uses, untouched.retrieved, untouched.successes) == (0, 0, 0)
        with pytest.raises(LibraryError):
            library.record_use(record_id_for("absent"), success=True)

    def test_list_and_stats(
        self, library: FunctionLibrary, corpus: dict[str, FunctionRecord]
    ) -> None:
        library.set_status(corpus["is_prime"].id, "archived")
        library.set_status(corpus["slugify"].id, "quarantined")
        n = len(corpus)
        assert len(library.list()) == n
        assert len(library.list(status="active")) == n - 2
        assert [r.name for r in library.list(status="archived")] == ["is_prime"]
        assert [r.name for r in library.list(status="quarantined")] == ["slugify"]
        stats = library.stats()
        assert stats["functions"] == n - 2
        assert stats["total"] == n
        assert stats["by_status"] == {"active": n - 2, "archived": 1, "quarantined": 1}
        assert stats["embedder"] == library.embedder_name

    def test_export_then_import_into_a_fresh_library(
        self,
        library: FunctionLibrary,
        corpus: dict[str, FunctionRecord],
        library_factory: Callable[[], FunctionLibrary],
        tmp_path,
    ) -> None:
        library.record_use(corpus["is_prime"].id, success=True, task_index=2)
        library.set_status(corpus["slugify"].id, "archived", "old")
        path = tmp_path / "library.jsonl"
        assert export_jsonl(library, path) == len(corpus)

        fresh = library_factory()
        assert import_jsonl(fresh, path) == (len(corpus), [])
        assert import_jsonl(fresh, path) == (len(corpus), [])  # idempotent
        before = sorted((r.to_dict() for r in library.list()), key=lambda d: d["id"])
        after = sorted((r.to_dict() for r in fresh.list()), key=lambda d: d["id"])
        assert after == before
        assert names_of(fresh.search("convert a Roman numeral", k=1)) == ["roman_to_int"]
        assert fresh.get_by_name("slugify") is None

    # -- the librarian's journal: task counter, last use, decision log ---------------------------
    def test_task_counter_counts_and_last_use_only_rises(
        self, library: FunctionLibrary, corpus: dict[str, FunctionRecord]
    ) -> None:
        assert library.task_index() == 0
        assert [library.next_task_index() for _ in range(3)] == [1, 2, 3]
        assert library.task_index() == 3
        target, other = corpus["is_prime"], corpus["slugify"]
        library.mark_used([target.id, other.id, record_id_for("absent")], 3)
        library.mark_used([target.id], 2)  # an older task never lowers it
        library.mark_used([], 9)
        stored = library.get(target.id)
        assert stored is not None and stored.last_used_task == 3
        assert stored.uses == 0  # stamping a task is not counting a use
        assert library.get(other.id).last_used_task == 3  # type: ignore[union-attr]
        assert library.get(corpus["gcd_of_list"].id).last_used_task == 0  # type: ignore[union-attr]

    def test_decision_log_appends_and_filters_by_name_or_target(
        self, library: FunctionLibrary
    ) -> None:
        assert library.decision_log() == []
        entries = [
            {"name": "f", "action": "added", "reason": "new function", "task_index": 1},
            {"name": "g", "action": "duplicate", "target": "f", "reason": "same results — ü"},
            {"name": "h", "action": "rejected", "reason": "probes differ", "extra": {"n": 2}},
        ]
        library.log_decisions(entries[:2])
        library.log_decisions(entries[2:])
        library.log_decisions([])
        assert library.decision_log() == entries
        assert library.decision_log(limit=2) == entries[1:]
        assert library.decision_log(name="f") == entries[:2]
        assert library.decision_log(name="h") == entries[2:]
        assert library.decision_log(name="absent") == []
        with pytest.raises(LibraryError):
            library.log_decisions([{"name": "x"}])  # no action

    def test_aliases_are_bound_by_the_kernel_source(self, library: FunctionLibrary) -> None:
        stored = library.add(
            make_record(
                "add_tax",
                docstring="Price with tax.",
                code="def add_tax(price, rate=0.2):\n    return price * (1 + rate)\n",
                aliases=["add_vat", "add_tax", "not an identifier"],
            )
        )
        source = stored.kernel_source()
        namespace: dict = {}
        exec(source, namespace)
        assert namespace["add_vat"] is namespace["add_tax"]
        assert source.endswith("add_vat = add_tax\n")
