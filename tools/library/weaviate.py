"""The Weaviate backend: the function library shared by many agents and machines.

Weaviate is the scale-out path (replication, sharding, multi-tenancy); SQLite stays the
zero-set-up default. This adapter uses the weaviate-client v4 API (tested with 4.23.1;
pyproject pins ``>=4.21.3,<4.24``):

- one collection (default ``DynagraphFunction``) with a typed property for every
  :class:`FunctionRecord` field: lists of text are ``TEXT_ARRAY``, probes are JSON in ``TEXT``,
  counters are ``INT``; only ``keywords`` (:meth:`FunctionRecord.keyword_text`) is
  BM25-searchable, so hybrid search ranks on the same text as SQLite's FTS;
- two self-provided named vectors, ``doc`` (name, signature, docstring) and ``task`` (origin
  task; the doc vector again when there is none), computed by the project's embedder: Weaviate
  runs no vectorizer module;
- object uuid = ``record.id`` (uuid5 of the normalized-AST hash), so an import is idempotent and
  ``data.replace`` is an upsert (falling back to ``insert`` when the object is new);
- the embedder's name is kept in the collection description and a different embedder is
  refused: vectors from two models are not comparable;
- an optional tenant per project, so several projects share one cluster;
- every client is closed (``close()`` / context manager); connecting, and the configuration
  of where the server is, live in :mod:`tools.library.weaviate_connect`.

Errors reach the user as one line: :class:`~tools.library.outbox.LibraryUnavailableError` when
the server cannot be reached (the outbox catches it), :class:`LibraryError` otherwise.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from dynagraph.tools.embeddings import Embedder
from dynagraph.tools.library.base import STATUSES, FunctionRecord, LibraryError, SearchHit
from dynagraph.tools.library.outbox import LibraryUnavailableError, OutboxLibrary
from dynagraph.tools.library.weaviate_connect import (
    LivenessProbe,
    WeaviateConfig,
    connect,
    is_unavailable,
    one_line,
)
from dynagraph.tools.library.weaviate_ledger import WeaviateLedger
from weaviate.classes.config import (
    Configure,
    DataType,
    Property,
    Tokenization,
    VectorDistances,
)
from weaviate.classes.data import DataObject
from weaviate.classes.query import Filter, HybridFusion, MetadataQuery, TargetVectors
from weaviate.classes.tenants import Tenant
from weaviate.exceptions import (
    UnexpectedStatusCodeError,
    WeaviateBaseError,
    WeaviateInsertManyAllFailedError,
)

__all__ = [
    "BatchReport",
    "WeaviateConfig",
    "WeaviateLibrary",
    "open_weaviate_library",
    "properties_to_record",
    "record_to_properties",
]

#: Weight of the origin-task view in the vector score; keep equal to the SQLite backend's
#: ``_TASK_VIEW_WEIGHT`` so both backends rank alike.
TASK_VIEW_WEIGHT = 0.5
VECTOR_NAMES: tuple[str, str] = ("doc", "task")
_EMBEDDER_MARK = re.compile(r"embedder=([^;]+); dim=(\d+)")
#: A query with no letter or digit has no keywords (BM25 would find nothing or refuse it).
_WORD = re.compile(r"[^\W_]")


@dataclass
class BatchReport:
    """Result of :meth:`WeaviateLibrary.add_many`: ids stored and, per failed id, the error."""

    added: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


# -- records <-> objects -----------------------------------------------------------------------
def _text(name: str, *, filterable: bool = False) -> Property:
    return Property(
        name=name,
        data_type=DataType.TEXT,
        tokenization=Tokenization.FIELD if filterable else None,
        index_filterable=filterable,
        index_searchable=False,
    )


def _texts(name: str, *, filterable: bool = False) -> Property:
    return Property(
        name=name,
        data_type=DataType.TEXT_ARRAY,
        tokenization=Tokenization.FIELD if filterable else None,
        index_filterable=filterable,
        index_searchable=False,
    )


def _int(name: str) -> Property:
    return Property(name=name, data_type=DataType.INT, index_filterable=False)


#: One property per FunctionRecord field (``id`` is the object uuid), plus ``keywords``.
PROPERTIES: tuple[Property, ...] = (
    _text("name", filterable=True),
    _text("code"),
    _text("ast_hash", filterable=True),
    _text("signature"),
    _text("docstring"),
    _texts("imports"),
    _texts("globals"),
    _texts("depends_on", filterable=True),
    _text("origin_task"),
    _text("origin_thread", filterable=True),
    _text("origin_model", filterable=True),
    _text("probes"),  # JSON: a list of recorded calls with arbitrary values
    _texts("tags", filterable=True),
    _texts("aliases", filterable=True),
    _int("version"),
    _int("uses"),
    _int("retrieved"),
    _int("successes"),
    _text("status", filterable=True),
    _text("status_reason"),
    _text("supersedes", filterable=True),  # "" stands for None
    _text("created_at", filterable=True),  # TEXT, not DATE: the record's string comes back as is
    _int("last_used_task"),
    Property(
        name="keywords",
        data_type=DataType.TEXT,
        tokenization=Tokenization.WORD,
        index_filterable=False,
        index_searchable=True,
    ),
)
_LIST_FIELDS = frozenset({"imports", "globals", "depends_on", "tags", "aliases"})
_INT_FIELDS = frozenset({"version", "uses", "retrieved", "successes", "last_used_task"})


def record_to_properties(record: FunctionRecord) -> dict[str, Any]:
    data = record.to_dict()
    data.pop("id")
    data["probes"] = json.dumps(data["probes"], ensure_ascii=False, sort_keys=True)
    data["supersedes"] = data["supersedes"] or ""
    data["keywords"] = record.keyword_text()
    return data


def properties_to_record(object_id: Any, props: dict[str, Any]) -> FunctionRecord:
    data = {k: v for k, v in props.items() if k != "keywords"}
    for name in _LIST_FIELDS:
        data[name] = list(data.get(name) or [])
    for name in _INT_FIELDS:
        if data.get(name) is not None:
            data[name] = int(data[name])
        else:
            data.pop(name, None)
    data["probes"] = json.loads(data.get("probes") or "[]")
    data["supersedes"] = data.get("supersedes") or None
    data["id"] = str(object_id)
    return FunctionRecord.from_dict({k: v for k, v in data.items() if v is not None})


def _fused_cosine(query_vec: np.ndarray, vectors: dict[str, Any]) -> float:
    """The vector score SQLite computes: doc and task cosine, weighted like the search."""
    cos = {
        name: float(np.dot(query_vec, np.asarray(vectors[name], dtype=np.float32)))
        for name in VECTOR_NAMES
        if name in vectors
    }
    doc = cos.get("doc", 0.0)
    return (1 - TASK_VIEW_WEIGHT) * doc + TASK_VIEW_WEIGHT * cos.get("task", doc)


def _is_missing(exc: UnexpectedStatusCodeError) -> bool:
    """Did a replace fail because the object does not exist? Weaviate 1.35 answers a PUT on
    a missing id with 500 "no object with id ..." (a PATCH with 404)."""
    return exc.status_code == 404 or (
        exc.status_code == 500 and "no object with id" in str(exc)
    )


def _valid_uuid(value: str) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


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

    #: The journal (task counter, decision log) lives in the server, shared by every machine;
    #: the outbox queues its writes instead of keeping a local ledger.
    shared_ledger = True

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

    def _description(self) -> str:
        dim = int(self.embedder.dim or 0)
        return f"dynagraph function library; embedder={self.embedder_name}; dim={dim}"

    def _open_collection(self) -> Any:
        name = self.config.collection
        with self._errors("open the collection"):
            if not self._client.collections.exists(name):
                self._create_collection(name)
            collection = self._client.collections.use(name)
            config = collection.config.get()
            self._check_collection(config)
            if self.config.tenant is None:
                return collection
            if not collection.tenants.exists(self.config.tenant):
                try:
                    collection.tenants.create(Tenant(name=self.config.tenant))
                except UnexpectedStatusCodeError:
                    if not collection.tenants.exists(self.config.tenant):  # not a race: real
                        raise
            return collection.with_tenant(self.config.tenant)

    def _create_collection(self, name: str) -> None:
        try:
            self._client.collections.create(
                name,
                description=self._description(),
                properties=list(PROPERTIES),
                vector_config=[
                    Configure.Vectors.self_provided(name=v, vector_index_config=self._index())
                    for v in VECTOR_NAMES
                ],
                replication_config=Configure.replication(factor=self.config.replication_factor),
                multi_tenancy_config=(
                    Configure.multi_tenancy(enabled=True, auto_tenant_activation=True)
                    if self.config.tenant
                    else None
                ),
            )
        except UnexpectedStatusCodeError:
            # Another agent may have created it between exists() and create(): then use it.
            if not self._client.collections.exists(name):
                raise

    def _index(self) -> Any:
        cosine = VectorDistances.COSINE
        if self.config.vector_index == "flat":
            return Configure.VectorIndex.flat(distance_metric=cosine)
        if self.config.vector_index == "dynamic":
            return Configure.VectorIndex.dynamic(distance_metric=cosine)
        return Configure.VectorIndex.hnsw(distance_metric=cosine)

    def _check_collection(self, config: Any) -> None:
        where = f"collection {self.config.collection} at {self.config.describe()}"
        mark = _EMBEDDER_MARK.search(config.description or "")
        if mark is None:
            raise LibraryError(
                f"{where} was not made by dynagraph (no embedder recorded): "
                "set another library.weaviate.collection"
            )
        stored, stored_dim = mark.group(1), int(mark.group(2))
        if stored != self.embedder_name:
            raise LibraryError(
                f"{where} was built with embedder {stored}; this config uses "
                f"{self.embedder_name}: export/import to re-embed"
            )
        dim = int(self.embedder.dim or 0)
        if stored_dim and dim and stored_dim != dim:
            raise LibraryError(f"{where} holds {stored_dim}-d vectors; {stored} now makes {dim}-d")
        missing = set(VECTOR_NAMES) - set(config.vector_config or {})
        if missing:
            raise LibraryError(f"{where} lacks the named vectors {sorted(missing)}")
        multi_tenant = bool(config.multi_tenancy_config and config.multi_tenancy_config.enabled)
        if multi_tenant and not self.config.tenant:
            raise LibraryError(f"{where} is multi-tenant: set library.weaviate.tenant")
        if self.config.tenant and not multi_tenant:
            raise LibraryError(
                f"{where} is not multi-tenant: unset library.weaviate.tenant or use a new collection"
            )

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
        if not _valid_uuid(record.id):
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
                if not _is_missing(exc):
                    raise
                try:
                    data.insert(properties=props, uuid=record.id, vector=vectors)
                except UnexpectedStatusCodeError:
                    # Inserted by another agent since our replace: replace it after all.
                    data.replace(uuid=record.id, properties=props, vector=vectors)
                else:
                    self.settle_versions(record.name)
        return FunctionRecord.from_dict(record.to_dict())

    def settle_versions(self, name: str) -> list[FunctionRecord]:
        """Apply the rule for versions of one name added at the same moment (docs/weaviate.md).

        Machines sharing a library admit without a common lock, so two of them can both read
        "newest is v1" and both store a v2 (different code, so different ids: nothing is lost,
        but the numbering repeats). After every insert of a new record the writer reads the
        name's records and, only if a version number is claimed twice, renumbers them in the
        order (version claimed, created_at, id): each record takes its claimed version or one
        more than the record before it, whichever is higher; a renumbered record supersedes
        the one just before it; of the records that are active only the newest stays active
        (the others are archived, kept and restorable).
        Every writer computes the same result from the same records, and the last writer to
        insert sees every record, so concurrent settles converge. Returns the records, in order.
        """
        records = self._fetch(Filter.by_property("name").equal(name))
        ordered = sorted(records, key=lambda r: (r.version, r.created_at, r.id))
        claimed = [r.version for r in ordered]
        if len(set(claimed)) == len(claimed):
            return ordered  # no version claimed twice (gaps, e.g. from an import, are kept)
        by_id = {r.id: r for r in ordered}
        versions: list[int] = []
        for record in ordered:
            versions.append(max(record.version, (versions[-1] if versions else 0) + 1))
        active = [r for r in ordered if r.status == "active"]
        newest_active = active[-1].id if active else None
        for index, (record, version) in enumerate(zip(ordered, versions, strict=True)):
            props: dict[str, Any] = {}
            if record.version != version:
                props["version"] = version
                if record.supersedes is None or record.supersedes in by_id:
                    props["supersedes"] = ordered[index - 1].id if index > 0 else ""
            if record.status == "active" and record.id != newest_active:
                props["status"] = "archived"
                props["status_reason"] = (
                    f"superseded by v{versions[-1]} (versions of {name} added at the same "
                    "moment, settled by (version, created_at, id))"
                )
            if props:
                self._update(record.id, props, "settle versions")
                for key, value in props.items():
                    setattr(record, key, (value or None) if key == "supersedes" else value)
        return ordered

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
            if _valid_uuid(record_id):
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
        if not _valid_uuid(record_id):
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
        return self._ordered(reply.objects)

    @staticmethod
    def _ordered(objects: Iterable[Any]) -> list[FunctionRecord]:
        keyed = [
            (
                str(o.properties.get("created_at") or ""),
                o.metadata.creation_time.timestamp() if o.metadata.creation_time else 0.0,
                properties_to_record(o.uuid, dict(o.properties)),
            )
            for o in objects
        ]
        keyed.sort(key=lambda t: (t[0], t[1]))
        return [record for _, _, record in keyed]

    def get(self, record_id: str) -> FunctionRecord | None:
        if not _valid_uuid(record_id):
            return None
        with self._errors("read a function", grpc=True):
            obj = self._collection.query.fetch_object_by_id(record_id)
        return None if obj is None else properties_to_record(obj.uuid, dict(obj.properties))

    @staticmethod
    def _named(name: str) -> Any:
        return Filter.by_property("name").equal(name) | Filter.by_property("aliases").contains_any(
            [name]
        )

    @staticmethod
    def _newest(records: list[FunctionRecord]) -> FunctionRecord | None:
        """Highest version, then latest created (records arrive oldest first)."""
        best: FunctionRecord | None = None
        for record in records:
            if best is None or (record.version, record.created_at) >= (
                best.version,
                best.created_at,
            ):
                best = record
        return best

    def get_by_name(self, name: str, *, include_inactive: bool = False) -> FunctionRecord | None:
        filters = self._named(name)
        if not include_inactive:
            filters = filters & Filter.by_property("status").equal("active")
        return self._newest(self._fetch(filters))

    def versions(self, name: str) -> list[FunctionRecord]:
        records = self._fetch(self._named(name))
        order = {id(r): i for i, r in enumerate(records)}
        return sorted(records, key=lambda r: (r.version, r.created_at, order[id(r)]))

    def find_by_hash(self, ast_hash: str) -> FunctionRecord | None:
        return self._newest(self._fetch(Filter.by_property("ast_hash").equal(ast_hash)))

    def list(self, *, status: str | None = None) -> list[FunctionRecord]:
        """Every record (cursor iteration: no result-window limit), oldest first."""
        with self._errors("list functions", grpc=True):
            objects = list(
                self._collection.iterator(return_metadata=MetadataQuery(creation_time=True))
            )
        records = self._ordered(objects)
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
                vector_score=_fused_cosine(query_vec, obj.vector or {}),
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


def open_weaviate_library(
    embedder: Embedder,
    config: WeaviateConfig,
    outbox_path: str | Path,
    *,
    flush_on_open: bool = True,
) -> OutboxLibrary:
    """The library a run uses: Weaviate behind a local outbox, whose queue from an earlier
    outage is flushed here (``flush_on_open``). Raises :class:`LibraryUnavailableError` (one
    line) when the server cannot be reached at all."""
    primary = WeaviateLibrary(embedder, config=config)
    try:
        return OutboxLibrary(
            primary, outbox_path, target=config.target(), flush_on_open=flush_on_open
        )
    except BaseException:
        primary.close()
        raise
