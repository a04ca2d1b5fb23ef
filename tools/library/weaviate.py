"""The Weaviate backend: the function library shared by many agents and machines.

Weaviate is the scale-out path (replication, sharding, multi-tenancy); SQLite stays the
zero-set-up default. This adapter uses the weaviate-client v4 API (tested with 4.23.1;
pyproject pins ``>=4.21.3,<4.24``):

- one collection (default ``DynagraphFunction``): a typed property per record field, BM25 on
  ``keywords`` only, two self-provided named vectors ``doc`` and ``task`` computed by the
  project's embedder (:mod:`tools.library.weaviate_schema`);
- object uuid = ``record.id`` (uuid5 of the normalized-AST hash): ``data.replace`` is an upsert
  (falling back to ``insert`` when the object is new) and an import is idempotent;
- same-name versions stored at the same moment are renumbered by one rule
  (:mod:`tools.library.weaviate_versions`); the journal (task counter, decision log) lives in
  the server too (:mod:`tools.library.weaviate_ledger`);
- an optional tenant per project; every client is closed; connecting lives in
  :mod:`tools.library.weaviate_connect`.

Errors reach the user as one line: :class:`~tools.library.outbox.LibraryUnavailableError` when
the server cannot be reached (the outbox catches it), :class:`LibraryError` otherwise.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from dynagraph.tools.embeddings import Embedder, embed_queries_soon
from dynagraph.tools.library.base import (
    STATUSES,
    TASK_VIEW_WEIGHT,
    FunctionRecord,
    LibraryError,
    SearchHit,
    newest,
)
from dynagraph.tools.library.outbox import LibraryUnavailableError
from dynagraph.tools.library.verified import VerifiedReads
from dynagraph.tools.library.weaviate_connect import (
    LivenessProbe,
    WeaviateConfig,
    connect,
    is_unavailable,
    one_line,
)
from dynagraph.tools.library.weaviate_ledger import WeaviateLedger
from dynagraph.tools.library.weaviate_schema import (
    PROPERTIES,
    VECTOR_NAMES,
    BatchReport,
    fused_cosine,
    is_missing,
    named_filter,
    open_collection,
    ordered_records,
    properties_to_record,
    record_to_properties,
    valid_uuid,
)
from dynagraph.tools.library.weaviate_versions import settle_versions
from weaviate.classes.data import DataObject
from weaviate.classes.query import Filter, HybridFusion, MetadataQuery, TargetVectors
from weaviate.exceptions import (
    UnexpectedStatusCodeError,
    WeaviateBaseError,
    WeaviateInsertManyAllFailedError,
)

#: A query with no letter or digit has no keywords (BM25 would find nothing or refuse it).
_WORD = re.compile(r"[^\W_]")

__all__ = [
    "PROPERTIES",
    "BatchReport",
    "WeaviateConfig",
    "WeaviateLibrary",
    "properties_to_record",
    "record_to_properties",
]


# -- the library ----------------------------------------------------------------------------------
class WeaviateLibrary:
    """A :class:`~tools.library.base.FunctionLibrary` in a Weaviate collection.

    Thread-safe as the v4 sync client is (one HTTP pool and one gRPC channel).

    ``record_use`` and ``record_retrieved`` are read-modify-write: Weaviate has no atomic
    increment, so two agents counting a use of one function at the same instant can lose one
    count. Counters are statistics for ranking and pruning, so that is accepted here.

    When the server goes away mid-run, writes (REST) fail at once and reads (gRPC) are preceded
    by a liveness probe that fails at once too, both as :class:`LibraryUnavailableError`, which
    the outbox (:mod:`tools.library.outbox`) turns into queued writes.
    """

    def __init__(
        self, embedder: Embedder, *, config: WeaviateConfig | None = None, **options: Any
    ) -> None:
        """``config``, or the ``library.weaviate`` mapping as keyword ``options`` (validated;
        a bad key is a one-line LibraryError). Connects, then creates or checks the collection."""
        if config is not None and options:
            raise TypeError("pass config or options, not both")
        self.embedder = embedder
        self.embedder_name: str = embedder.name
        self.config = config if config is not None else WeaviateConfig.from_mapping(options)
        self._client = connect(self.config)
        self._closed = False
        self._probe = LivenessProbe(self.config) if self.config.liveness_check else None
        try:
            self._collection = self._open_collection()
        except BaseException:
            self.close()
            raise
        self._ledger = WeaviateLedger(
            self._client,
            self.config.collection,
            tenant=self.config.tenant,
            replication_factor=self.config.replication_factor,
            errors=self._errors,
        )

    def _open_collection(self) -> Any:
        with self._errors("open the collection"):
            return open_collection(self._client, self.config, self.embedder)

    # -- plumbing ---------------------------------------------------------------------------------
    @contextmanager
    def _errors(self, action: str, *, grpc: bool = False) -> Iterator[None]:
        """Turn client exceptions into one-line library errors; before a gRPC call, fail fast
        if the server is not there (see :class:`LivenessProbe`)."""
        if grpc and self._probe is not None:
            self._probe.check()
        try:
            yield
        except LibraryError:
            raise
        except Exception as exc:
            if is_unavailable(exc):
                raise LibraryUnavailableError(self.config.unreachable_message()) from exc
            if isinstance(exc, WeaviateBaseError):
                where = f"{self.config.describe()} collection {self.config.collection}"
                raise LibraryError(
                    f"Weaviate at {where} could not {action}: {one_line(exc)}"
                ) from exc
            raise

    def _vectors(self, records: Sequence[FunctionRecord]) -> list[dict[str, list[float]]]:
        """Both named vectors per record; a record without an origin task reuses its doc vector
        (as SQLite scores it), so multi-target search never meets a missing vector."""
        docs = self.embedder.embed_documents([r.doc_view() for r in records])
        with_task = [i for i, r in enumerate(records) if r.task_view()]
        tasks = self.embedder.embed_documents([records[i].task_view() for i in with_task])
        task_of = {i: tasks[j] for j, i in enumerate(with_task)}
        return [
            {"doc": docs[i].tolist(), "task": task_of.get(i, docs[i]).tolist()}
            for i in range(len(records))
        ]

    @staticmethod
    def _check_record(record: FunctionRecord) -> None:
        if record.status not in STATUSES:
            raise LibraryError(f"status must be one of {STATUSES}, not {record.status!r}")
        if not valid_uuid(record.id):
            raise LibraryError(f"record {record.name}: id {record.id!r} is not a UUID")

    # -- writes -----------------------------------------------------------------------------------
    def add(self, record: FunctionRecord) -> FunctionRecord:
        """Upsert: ``data.replace`` on the record's uuid, ``data.insert`` when it is new."""
        self._check_record(record)
        vectors = self._vectors([record])[0]
        props = record_to_properties(record)
        data = self._collection.data
        with self._errors(f"store function {record.name}"):
            try:
                data.replace(uuid=record.id, properties=props, vector=vectors)
            except UnexpectedStatusCodeError as exc:
                if not is_missing(exc):
                    raise
                try:
                    data.insert(properties=props, uuid=record.id, vector=vectors)
                except UnexpectedStatusCodeError:
                    # Inserted by another agent since our replace: replace it after all.
                    data.replace(uuid=record.id, properties=props, vector=vectors)
            # after every write, a replace too: a writer with a stale view may have re-sent a
            # version another writer had settled (tools/library/weaviate_versions.py)
            self.settle_versions(record.name)
        return FunctionRecord.from_dict(record.to_dict())

    def settle_versions(self, name: str) -> list[FunctionRecord]:
        """Apply the version rule for ``name`` (:mod:`tools.library.weaviate_versions`): when
        its records are not numbered 1..n, e.g. two machines admitting a v2 at once."""
        records = self._fetch(Filter.by_property("name").equal(name))
        return settle_versions(
            records, lambda record_id, props: self._update(record_id, props, "settle versions")
        )

    def add_many(self, records: Iterable[FunctionRecord]) -> BatchReport:
        """Batch upsert (gRPC batch import overwrites existing uuids); failures per object."""
        report = BatchReport()
        todo = list(records)
        for record in todo:
            self._check_record(record)
        size = self.config.batch_size
        for start in range(0, len(todo), size):
            chunk = todo[start : start + size]
            objects = [
                DataObject(properties=record_to_properties(r), uuid=r.id, vector=v)
                for r, v in zip(chunk, self._vectors(chunk), strict=True)
            ]
            with self._errors("import a batch", grpc=True):
                try:
                    result = self._collection.data.insert_many(objects)
                except WeaviateInsertManyAllFailedError as exc:
                    report.failed.update({r.id: one_line(exc) for r in chunk})
                    continue
            for index, record in enumerate(chunk):
                if index in result.errors:
                    report.failed[record.id] = one_line(result.errors[index].message)
                else:
                    report.added.append(record.id)
        return report

    def _update(self, record_id: str, props: dict[str, Any], action: str) -> None:
        with self._errors(action):
            try:
                self._collection.data.update(uuid=record_id, properties=props)
            except UnexpectedStatusCodeError as exc:
                if exc.status_code == 404:
                    raise LibraryError(f"no function with id {record_id} in Weaviate") from exc
                raise

    def record_use(self, record_id: str, *, success: bool, task_index: int | None = None) -> None:
        """Read-modify-write (see the class docstring)."""
        current = self.get(record_id)
        if current is None:
            raise LibraryError(f"no function with id {record_id} in Weaviate")
        props = {"uses": current.uses + 1, "successes": current.successes + int(success)}
        if task_index is not None:
            props["last_used_task"] = int(task_index)
        self._update(record_id, props, "count a use")

    def mark_used(self, record_ids: Iterable[str], task_index: int) -> None:
        """Raise last_used_task (no use counted); read-modify-write like record_use."""
        for record_id in dict.fromkeys(record_ids):
            current = self.get(record_id)
            if current is not None and current.last_used_task < int(task_index):
                self._update(record_id, {"last_used_task": int(task_index)}, "mark a use")

    def record_retrieved(self, record_ids: Iterable[str]) -> None:
        """One retrieval per id given (an id given twice counts twice); unknown ids ignored."""
        wanted: dict[str, int] = {}
        for record_id in record_ids:
            if valid_uuid(record_id):
                key = str(uuid.UUID(str(record_id)))  # Weaviate answers in this canonical form
                wanted[key] = wanted.get(key, 0) + 1
        if not wanted:
            return
        found = self._fetch(Filter.by_id().contains_any(list(wanted)), limit=len(wanted))
        for record in found:
            self._update(
                record.id, {"retrieved": record.retrieved + wanted[record.id]}, "count a retrieval"
            )

    def set_status(self, record_id: str, status: str, reason: str = "") -> None:
        if status not in STATUSES:
            raise LibraryError(f"status must be one of {STATUSES}, not {status!r}")
        if not valid_uuid(record_id):
            raise LibraryError(f"no function with id {record_id} in Weaviate")
        self._update(record_id, {"status": status, "status_reason": reason}, "set a status")

    # -- reads ------------------------------------------------------------------------------------
    def _fetch(self, filters: Any, *, limit: int = 1000) -> list[FunctionRecord]:
        """Records matching ``filters``, oldest first (created_at, then Weaviate's creation
        time, which survives replaces: the insertion order SQLite keeps with its seq)."""
        with self._errors("read functions", grpc=True):
            reply = self._collection.query.fetch_objects(
                filters=filters, limit=limit, return_metadata=MetadataQuery(creation_time=True)
            )
        return ordered_records(reply.objects)

    def get(self, record_id: str) -> FunctionRecord | None:
        if not valid_uuid(record_id):
            return None
        with self._errors("read a function", grpc=True):
            obj = self._collection.query.fetch_object_by_id(record_id)
        return None if obj is None else properties_to_record(obj.uuid, dict(obj.properties))

    def get_by_name(self, name: str, *, include_inactive: bool = False) -> FunctionRecord | None:
        filters = named_filter(name)
        if not include_inactive:
            filters = filters & Filter.by_property("status").equal("active")
        return newest(self._fetch(filters))

    def versions(self, name: str) -> list[FunctionRecord]:
        records = self._fetch(named_filter(name))
        order = {id(r): i for i, r in enumerate(records)}
        return sorted(records, key=lambda r: (r.version, r.created_at, order[id(r)]))

    def find_by_hash(self, ast_hash: str) -> FunctionRecord | None:
        return newest(self._fetch(Filter.by_property("ast_hash").equal(ast_hash)))

    def list(self, *, status: str | None = None) -> list[FunctionRecord]:
        """Every record (cursor iteration: no result-window limit), oldest first."""
        with self._errors("list functions", grpc=True):
            objects = list(
                self._collection.iterator(return_metadata=MetadataQuery(creation_time=True))
            )
        records = ordered_records(objects)
        return records if status is None else [r for r in records if r.status == status]

    def stats(self) -> dict[str, Any]:
        by_status: dict[str, int] = {}
        with self._errors("count functions", grpc=True):
            for status in STATUSES:
                reply = self._collection.aggregate.over_all(
                    filters=Filter.by_property("status").equal(status), total_count=True
                )
                by_status[status] = int(reply.total_count or 0)
        where = f"{self.config.describe()} collection {self.config.collection}"
        return {
            "functions": by_status["active"],
            "total": sum(by_status.values()),
            "by_status": by_status,
            "embedder": self.embedder_name,
            "path": where + (f" tenant {self.config.tenant}" if self.config.tenant else ""),
            "backend": "weaviate",
        }

    # -- search -----------------------------------------------------------------------------------
    @staticmethod
    def _filters(status: str | None, tags: Iterable[str] | None) -> Any:
        parts = []
        if status is not None:
            parts.append(Filter.by_property("status").equal(status))
        wanted = sorted(set(tags or ()))
        if wanted:
            parts.append(Filter.by_property("tags").contains_all(wanted))
        return Filter.all_of(parts) if parts else None

    @staticmethod
    def _target() -> Any:
        if TASK_VIEW_WEIGHT <= 0:
            return "doc"
        return TargetVectors.manual_weights(
            {"doc": 1.0 - TASK_VIEW_WEIGHT, "task": TASK_VIEW_WEIGHT}
        )

    def prepare_search(self, *queries: str) -> None:
        """Embed ``queries`` in the background (this side embeds; nothing is asked of the
        server)."""
        if queries:
            embed_queries_soon(self.embedder, queries)

    def search(
        self,
        query: str,
        k: int = 5,
        *,
        status: str | None = "active",
        tags: Iterable[str] | None = None,
        alpha: float = 0.5,
    ) -> list[SearchHit]:
        """Hybrid search: BM25 on ``keywords`` fused (relative score) with the weighted doc and
        task vectors of the query, which this side embeds. With ``alpha == 0`` only keyword
        matches come back. ``vector_score`` is the fused cosine computed here from the returned
        vectors; ``keyword_score`` is each hit's BM25 score over the best hit's, from a second
        BM25 query restricted to the hits (Weaviate reports only the fused score)."""
        if k <= 0:
            return []
        alpha = min(max(float(alpha), 0.0), 1.0)
        has_words = _WORD.search(query) is not None
        if alpha == 0 and not has_words:
            return []
        query_vec = self.embedder.embed_query(query)
        filters = self._filters(status, tags)
        with self._errors("search", grpc=True):
            reply = self._collection.query.hybrid(
                query=query if has_words else None,  # no words: a vector-only search
                vector=query_vec.tolist(),
                alpha=alpha,
                target_vector=self._target(),
                query_properties=["keywords"],
                fusion_type=HybridFusion.RELATIVE_SCORE,
                limit=k,
                filters=filters,
                include_vector=list(VECTOR_NAMES),
                return_metadata=MetadataQuery(score=True),
            )
        objects = list(reply.objects)
        keyword = self._keyword_scores(query, [str(o.uuid) for o in objects]) if has_words else {}
        return [
            SearchHit(
                record=properties_to_record(obj.uuid, dict(obj.properties)),
                score=float(obj.metadata.score or 0.0),
                vector_score=fused_cosine(query_vec, obj.vector or {}),
                keyword_score=keyword.get(str(obj.uuid), 0.0),
            )
            for obj in objects
        ]

    def _keyword_scores(self, query: str, ids: list[str]) -> dict[str, float]:
        if not ids:
            return {}
        with self._errors("search"):  # the hybrid call just reached the server
            reply = self._collection.query.bm25(
                query=query,
                query_properties=["keywords"],
                filters=Filter.by_id().contains_any(ids),
                limit=len(ids),
                return_metadata=MetadataQuery(score=True),
                return_properties=[],
            )
        raw = {str(o.uuid): float(o.metadata.score or 0.0) for o in reply.objects}
        top = max(raw.values(), default=0.0)
        return {i: s / top for i, s in raw.items()} if top > 0 else {}

    def nearest(self, text: str, k: int = 5, *, status: str | None = "active") -> list[SearchHit]:
        """Nearest by the doc vector only; ``text`` is embedded as a passage (dedup compares
        a function with functions). Score is the cosine similarity, 1 - cosine distance."""
        if k <= 0:
            return []
        vec = self.embedder.embed_documents([text])[0]
        with self._errors("search", grpc=True):
            reply = self._collection.query.near_vector(
                near_vector=vec.tolist(),
                target_vector="doc",
                limit=k,
                filters=self._filters(status, None),
                return_metadata=MetadataQuery(distance=True),
            )
        hits = []
        for obj in reply.objects:
            similarity = 1.0 - float(obj.metadata.distance or 0.0)
            hits.append(
                SearchHit(
                    record=properties_to_record(obj.uuid, dict(obj.properties)),
                    score=similarity,
                    vector_score=similarity,
                )
            )
        return hits

    # -- the journal, shared in the server (tools/library/weaviate_ledger.py) ------------------
    def next_task_index(self, *, at: str | None = None, task_id: str | None = None) -> int:
        """Record one finished task; its index by time among every machine's tasks. ``at``
        and ``task_id`` are fixed by the outbox when it queues the task (idempotent replay)."""
        return self._ledger.count_task(at=at, task_id=task_id)

    def task_index(self) -> int:
        return self._ledger.task_index()

    def log_decisions(
        self,
        entries: Iterable[dict[str, Any]],
        *,
        at: str | None = None,
        ids: list[str] | None = None,
    ) -> None:
        self._ledger.log_decisions(entries, at=at, ids=ids)

    def decision_log(self, *, limit: int = 100, name: str | None = None) -> list[dict[str, Any]]:
        return self._ledger.decision_log(limit=limit, name=name)

    def thread_decisions(self, thread: str) -> list[dict[str, Any]]:
        return self._ledger.thread_decisions(thread)

    # -- lifetime ---------------------------------------------------------------------------------
    def close(self) -> None:
        if not getattr(self, "_closed", True):
            self._closed = True
            try:
                if self._probe is not None:
                    self._probe.close()
            finally:
                self._client.close()

    def __enter__(self) -> WeaviateLibrary:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VerifiedWeaviateLibrary(VerifiedReads, WeaviateLibrary):
    """Reads skip records that fail their integrity check (tools/library/verified.py)."""
