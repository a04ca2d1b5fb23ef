"""The Weaviate library's schema: records <-> objects, and the collection's set-up and checks.

Split from :mod:`tools.library.weaviate` (the library's operations): one typed property per
:class:`FunctionRecord` field plus ``keywords`` (the only BM25-searchable one), two
self-provided named vectors (``doc``, ``task``), and the embedder's name kept in the
collection's description so that a collection built with another embedder is refused.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from dynagraph.tools.embeddings import Embedder
from dynagraph.tools.library.base import TASK_VIEW_WEIGHT, FunctionRecord, LibraryError
from dynagraph.tools.library.weaviate_connect import WeaviateConfig
from weaviate.classes.config import (
    Configure,
    DataType,
    Property,
    Tokenization,
    VectorDistances,
)
from weaviate.classes.query import Filter
from weaviate.classes.tenants import Tenant
from weaviate.exceptions import UnexpectedStatusCodeError

VECTOR_NAMES: tuple[str, str] = ("doc", "task")
_EMBEDDER_MARK = re.compile(r"embedder=([^;]+); dim=(\d+)")


@dataclass
class BatchReport:
    """Result of :meth:`WeaviateLibrary.add_many`: ids stored and, per failed id, the error."""

    added: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


# -- records <-> objects -----------------------------------------------------------------------
def text_property(name: str, *, filterable: bool = False, array: bool = False) -> Property:
    """A text property matched whole (``filterable``: by equality, FIELD tokens) or only
    stored; never in Weaviate's own BM25 (keywords are scored by the ``keywords`` field)."""
    return Property(
        name=name,
        data_type=DataType.TEXT_ARRAY if array else DataType.TEXT,
        tokenization=Tokenization.FIELD if filterable else None,
        index_filterable=filterable,
        index_searchable=False,
    )


def _texts(name: str, *, filterable: bool = False) -> Property:
    return text_property(name, filterable=filterable, array=True)


def _int(name: str) -> Property:
    return Property(name=name, data_type=DataType.INT, index_filterable=False)


#: One property per FunctionRecord field (``id`` is the object uuid), plus ``keywords``.
PROPERTIES: tuple[Property, ...] = (
    text_property("name", filterable=True),
    text_property("code"),
    text_property("ast_hash", filterable=True),
    text_property("signature"),
    text_property("docstring"),
    _texts("imports"),
    _texts("globals"),
    _texts("depends_on", filterable=True),
    text_property("origin_task"),
    text_property("origin_thread", filterable=True),
    text_property("origin_model", filterable=True),
    text_property("probes"),  # JSON: a list of recorded calls with arbitrary values
    _texts("tags", filterable=True),
    _texts("aliases", filterable=True),
    _int("version"),
    _int("uses"),
    _int("retrieved"),
    _int("successes"),
    text_property("status", filterable=True),
    text_property("status_reason"),
    text_property("supersedes", filterable=True),  # "" stands for None
    text_property(
        "created_at", filterable=True
    ),  # TEXT, not DATE: the record's string comes back as is
    _int("last_used_task"),
    Property(
        name="keywords",
        data_type=DataType.TEXT,
        tokenization=Tokenization.WORD,
        index_filterable=False,
        index_searchable=True,
    ),
)
_LIST_FIELDS = frozenset(p.name for p in PROPERTIES if p.dataType == DataType.TEXT_ARRAY)
_INT_FIELDS = frozenset(p.name for p in PROPERTIES if p.dataType == DataType.INT)


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


def fused_cosine(query_vec: np.ndarray, vectors: dict[str, Any]) -> float:
    """The vector score SQLite computes: doc and task cosine, weighted like the search."""
    cos = {
        name: float(np.dot(query_vec, np.asarray(vectors[name], dtype=np.float32)))
        for name in VECTOR_NAMES
        if name in vectors
    }
    doc = cos.get("doc", 0.0)
    return (1 - TASK_VIEW_WEIGHT) * doc + TASK_VIEW_WEIGHT * cos.get("task", doc)


def is_missing(exc: UnexpectedStatusCodeError) -> bool:
    """Did a replace fail because the object does not exist? Weaviate 1.35 answers a PUT on
    a missing id with 500 "no object with id ..." (a PATCH with 404)."""
    return exc.status_code == 404 or (exc.status_code == 500 and "no object with id" in str(exc))


def valid_uuid(value: str) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def ordered_records(objects: Iterable[Any]) -> list[FunctionRecord]:
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


def named_filter(name: str) -> Any:
    return Filter.by_property("name").equal(name) | Filter.by_property("aliases").contains_any(
        [name]
    )


# -- the collection ----------------------------------------------------------------------------
def description(embedder: Embedder) -> str:
    dim = int(embedder.dim or 0)
    return f"dynagraph function library; embedder={embedder.name}; dim={dim}"


def open_collection(client: Any, config: WeaviateConfig, embedder: Embedder) -> Any:
    """The function collection (created when missing, checked when there), with the tenant
    (created when missing). Call inside the library's error translation."""
    create_once(
        client,
        config.collection,
        description=description(embedder),
        properties=list(PROPERTIES),
        vector_config=[
            Configure.Vectors.self_provided(name=v, vector_index_config=vector_index(config))
            for v in VECTOR_NAMES
        ],
        replication_config=Configure.replication(factor=config.replication_factor),
        multi_tenancy_config=multi_tenancy(config.tenant),
    )
    collection = client.collections.use(config.collection)
    check_collection(collection.config.get(), config, embedder)
    return tenant_view(collection, config.tenant)


def create_once(client: Any, name: str, **options: Any) -> None:
    """Create the collection ``name`` with ``options`` unless it is there; another agent
    creating it between ``exists()`` and ``create()`` is fine (then it is used)."""
    if client.collections.exists(name):
        return
    try:
        client.collections.create(name, **options)
    except UnexpectedStatusCodeError:
        if not client.collections.exists(name):  # not a creation race: real
            raise


def multi_tenancy(tenant: str | None) -> Any:
    """The multi-tenancy set-up of a collection for ``tenant`` (None: single-tenant)."""
    return Configure.multi_tenancy(enabled=True, auto_tenant_activation=True) if tenant else None


def tenant_view(collection: Any, tenant: str | None) -> Any:
    """``collection`` as ``tenant`` sees it (the tenant created when missing, race-safe)."""
    if not tenant:
        return collection
    if not collection.tenants.exists(tenant):
        try:
            collection.tenants.create(Tenant(name=tenant))
        except UnexpectedStatusCodeError:
            if not collection.tenants.exists(tenant):  # not a race: real
                raise
    return collection.with_tenant(tenant)


def vector_index(config: WeaviateConfig) -> Any:
    cosine = VectorDistances.COSINE
    if config.vector_index == "flat":
        return Configure.VectorIndex.flat(distance_metric=cosine)
    if config.vector_index == "dynamic":
        return Configure.VectorIndex.dynamic(distance_metric=cosine)
    return Configure.VectorIndex.hnsw(distance_metric=cosine)


def check_collection(config: Any, wanted: WeaviateConfig, embedder: Embedder) -> None:
    where = f"collection {wanted.collection} at {wanted.describe()}"
    mark = _EMBEDDER_MARK.search(config.description or "")
    if mark is None:
        raise LibraryError(
            f"{where} was not made by dynagraph (no embedder recorded): "
            "set another library.weaviate.collection"
        )
    stored, stored_dim = mark.group(1), int(mark.group(2))
    if stored != embedder.name:
        raise LibraryError(
            f"{where} was built with embedder {stored}; this config uses "
            f"{embedder.name}: export/import to re-embed"
        )
    dim = int(embedder.dim or 0)
    if stored_dim and dim and stored_dim != dim:
        raise LibraryError(f"{where} holds {stored_dim}-d vectors; {stored} now makes {dim}-d")
    missing = set(VECTOR_NAMES) - set(config.vector_config or {})
    if missing:
        raise LibraryError(f"{where} lacks the named vectors {sorted(missing)}")
    multi_tenant = bool(config.multi_tenancy_config and config.multi_tenancy_config.enabled)
    if multi_tenant and not wanted.tenant:
        raise LibraryError(f"{where} is multi-tenant: set library.weaviate.tenant")
    if wanted.tenant and not multi_tenant:
        raise LibraryError(
            f"{where} is not multi-tenant: unset library.weaviate.tenant or use a new collection"
        )
