"""A Weaviate server double for offline wire-level tests: real HTTP and real gRPC on loopback.

No Weaviate server can run on these machines, so the adapter is tested the way weaviate-client
tests itself (its ``mock_tests``): the REST side is a pytest-httpserver and the gRPC side an
in-process ``grpc.server`` implementing the ``Weaviate`` service from the protobufs that ship
inside the client (``weaviate.proto.v1``), plus the standard health service. The real client
talks to it over real sockets, so every request the adapter makes is recorded as sent.

It keeps just enough state to be a server: collections, tenants and objects (written by REST
PUT/POST/PATCH and gRPC BatchObjects). Searches answer from that state with simple semantics
(filters on text properties and ids, cosine on named vectors, a crude keyword overlap) unless a
test scripted the reply with :meth:`FakeWeaviate.reply_next_search`. Its rankings are NOT
Weaviate's: tests use it to check what is sent and how replies are read, and the contract suite
against a real server (``DYNAGRAPH_TEST_WEAVIATE_URL``) checks behaviour.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import threading
import time
import uuid as uuid_lib
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
from google.protobuf.json_format import MessageToDict
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pytest_httpserver import HTTPServer
from weaviate.proto.v1 import (
    aggregate_pb2,
    base_pb2,
    batch_pb2,
    properties_pb2,
    search_get_pb2,
    tenants_pb2,
    weaviate_pb2_grpc,
)
from werkzeug import Request, Response

SERVER_VERSION = "1.33.4"  # the version docker-compose.yml pins
_Op = base_pb2.Filters


@dataclass
class StoredObject:
    id: str
    properties: dict[str, Any]
    vectors: dict[str, list[float]] = field(default_factory=dict)
    created_ms: int = 0


@dataclass
class RestCall:
    method: str
    path: str
    query: dict[str, str]
    body: Any


# -- proto helpers --------------------------------------------------------------------------------
def unpack_floats(data: bytes) -> list[float]:
    return list(struct.unpack(f"<{len(data) // 4}f", data))


def pack_floats(values: list[float]) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


def _value(v: Any) -> properties_pb2.Value:
    if v is None:
        return properties_pb2.Value(null_value=0)
    if isinstance(v, bool):
        return properties_pb2.Value(bool_value=v)
    if isinstance(v, int):
        return properties_pb2.Value(int_value=v)
    if isinstance(v, float):
        return properties_pb2.Value(number_value=v)
    if isinstance(v, list):
        return properties_pb2.Value(
            list_value=properties_pb2.ListValue(
                text_values=properties_pb2.TextValues(values=[str(x) for x in v])
            )
        )
    return properties_pb2.Value(text_value=str(v))


def batch_object_to_stored(obj: batch_pb2.BatchObject) -> StoredObject:
    """What a BatchObjects request carries, as plain Python (the client sends ints as numbers
    in a Struct, text lists separately, empty lists by name)."""
    props: dict[str, Any] = {}
    for key, value in MessageToDict(obj.properties.non_ref_properties).items():
        props[key] = int(value) if isinstance(value, float) and value.is_integer() else value
    for arr in obj.properties.text_array_properties:
        props[arr.prop_name] = list(arr.values)
    for name in obj.properties.empty_list_props:
        props[name] = []
    vectors = {v.name: unpack_floats(v.vector_bytes) for v in obj.vectors}
    return StoredObject(id=obj.uuid, properties=props, vectors=vectors)


def query_vector(search: Any) -> list[float]:
    """The query vector of a NearVector or Hybrid message (the client uses either field)."""
    if search.vector_bytes:
        return unpack_floats(search.vector_bytes)
    if len(search.vectors):
        return unpack_floats(search.vectors[0].vector_bytes)
    return []


def _target_names(targets: Any) -> list[str]:
    return list(targets.target_vectors) if targets is not None else []


def _weights(targets: Any) -> dict[str, float]:
    return {w.target: w.weight for w in getattr(targets, "weights_for_targets", [])}


# -- the fake --------------------------------------------------------------------------------------
class FakeWeaviate:
    """REST + gRPC Weaviate double on 127.0.0.1 (free ports); a context manager."""

    def __init__(self, *, version: str = SERVER_VERSION) -> None:
        self.version = version
        self.http = HTTPServer(host="127.0.0.1", port=0, threaded=True)
        self.http_port = 0
        self.grpc_port = 0
        self._grpc: grpc.Server | None = None
        self._lock = threading.RLock()
        self.classes: dict[str, dict[str, Any]] = {}
        self.tenants: dict[str, set[str]] = {}
        self.objects: dict[tuple[str, str], dict[str, StoredObject]] = {}
        self.rest_calls: list[RestCall] = []
        self.grpc_calls: list[tuple[str, Any]] = []
        self.batch_rejections: dict[str, str] = {}
        self._scripted: list[list[dict[str, Any]]] = []
        self._last_score: dict[str, float] = {}  # of the last hybrid/bm25 answer, by id
        self._last_distance: dict[str, float] = {}  # of the last near_vector answer, by id

    # -- lifetime ----------------------------------------------------------------------------
    def start(self) -> FakeWeaviate:
        self.http.expect_request(re.compile(r"^/v1/.*")).respond_with_handler(self._rest)
        self.http.start()
        self.http_port = self.http.port
        self._start_grpc()
        return self

    def _start_grpc(self) -> None:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        weaviate_pb2_grpc.add_WeaviateServicer_to_server(_Servicer(self), server)
        health_pb2_grpc.add_HealthServicer_to_server(_Health(), server)
        self.grpc_port = server.add_insecure_port(f"127.0.0.1:{self.grpc_port or 0}")
        server.start()
        self._grpc = server

    def stop(self) -> None:
        if self.http.is_running():
            self.http.stop()
        if self._grpc is not None:
            self._grpc.stop(None).wait()
            self._grpc = None

    def go_down(self) -> None:
        """Stop listening (connections are refused) but keep the state."""
        self.stop()

    def come_back(self) -> None:
        """Listen again on the same ports, with the same state."""
        self.http = HTTPServer(host="127.0.0.1", port=self.http_port, threaded=True)
        self.http.expect_request(re.compile(r"^/v1/.*")).respond_with_handler(self._rest)
        self.http.start()
        self._start_grpc()

    def __enter__(self) -> FakeWeaviate:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def config(self, **overrides: Any) -> Any:
        from dynagraph.tools.library.weaviate import WeaviateConfig

        values: dict[str, Any] = {
            "mode": "local",
            "host": "127.0.0.1",
            "http_port": self.http_port,
            "grpc_port": self.grpc_port,
            "timeout": 10.0,
            "init_timeout": 5.0,
        }
        values.update(overrides)
        return WeaviateConfig(**values)

    # -- test helpers ------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget every collection, object, scripted reply and logged request."""
        with self._lock:
            for store in (self.classes, self.tenants, self.objects, self.batch_rejections):
                store.clear()
            self.rest_calls.clear()
            self.grpc_calls.clear()
            self._scripted.clear()

    def reply_next_search(self, objects: list[dict[str, Any]]) -> None:
        """Script the next Search reply: dicts with id, properties, and optionally vectors,
        score, distance."""
        self._scripted.append(objects)

    def requests(self, method: str) -> list[Any]:
        """The gRPC requests of one method (``Search``, ``BatchObjects``...), in order."""
        return [req for name, req in self.grpc_calls if name == method]

    def rest(self, method: str, path_pattern: str) -> list[RestCall]:
        return [
            c for c in self.rest_calls if c.method == method and re.fullmatch(path_pattern, c.path)
        ]

    def stored(self, collection: str, tenant: str = "") -> dict[str, StoredObject]:
        return self.objects.setdefault((collection, tenant), {})

    # -- REST --------------------------------------------------------------------------------
    def _rest(self, request: Request) -> Response:
        body = request.get_json(silent=True) if request.data else None
        call = RestCall(request.method, request.path, dict(request.args), body)
        with self._lock:
            self.rest_calls.append(call)
            status, payload = self._route(call)
        if payload is None:
            return Response(status=status)
        return Response(json.dumps(payload), status=status, content_type="application/json")

    def _route(self, c: RestCall) -> tuple[int, Any]:
        p, m = c.path, c.method
        if p == "/v1/meta":
            return 200, {"version": self.version, "hostname": "http://[::]:8080", "modules": {}}
        if p in ("/v1/.well-known/ready", "/v1/.well-known/live"):
            return 200, {}
        if p == "/v1/schema" and m == "POST":
            name = c.body["class"]
            if name in self.classes:
                return 422, {"error": [{"message": f"class name {name!r} already exists"}]}
            self.classes[name] = with_server_defaults(c.body)
            self.tenants[name] = set()
            return 200, self.classes[name]
        if p == "/v1/schema" and m == "GET":
            return 200, {"classes": list(self.classes.values())}
        if (match := re.fullmatch(r"/v1/schema/(\w+)", p)) and m == "DELETE":
            self.classes.pop(match.group(1), None)
            for key in [k for k in self.objects if k[0] == match.group(1)]:
                del self.objects[key]
            return 200, None
        if match := re.fullmatch(r"/v1/schema/(\w+)", p):
            cls = self.classes.get(match.group(1))
            return (200, cls) if cls is not None else (404, None)
        if match := re.fullmatch(r"/v1/schema/(\w+)/tenants(?:/([\w-]+))?", p):
            return self._tenants(m, match.group(1), match.group(2), c.body)
        if match := re.fullmatch(r"/v1/objects/(\w+)/([0-9a-f-]+)", p):
            return self._object(m, match.group(1), match.group(2), c)
        if p == "/v1/objects" and m == "POST":
            tenant = c.body.get("tenant") or ""
            store = self.stored(c.body["class"], tenant)
            if c.body["id"] in store:
                return 422, {"error": [{"message": f"id '{c.body['id']}' already exists"}]}
            store[c.body["id"]] = self._from_rest(c.body)
            return 200, c.body
        return 404, {"error": [{"message": f"fake has no route {m} {p}"}]}

    def _tenants(self, m: str, cls: str, name: str | None, body: Any) -> tuple[int, Any]:
        known = self.tenants.setdefault(cls, set())
        if m == "HEAD" or (m == "GET" and name):
            return (200, {"name": name}) if name in known else (404, None)
        if m == "POST":
            known.update(t["name"] for t in body)
            return 200, body
        return 200, [{"name": t, "activityStatus": "HOT"} for t in sorted(known)]

    @staticmethod
    def _from_rest(body: dict[str, Any]) -> StoredObject:
        return StoredObject(
            id=body["id"],
            properties=dict(body.get("properties") or {}),
            vectors={k: list(v) for k, v in (body.get("vectors") or {}).items()},
            created_ms=int(time.time() * 1000),
        )

    def _object(self, m: str, cls: str, oid: str, c: RestCall) -> tuple[int, Any]:
        tenant = (c.body or {}).get("tenant") or c.query.get("tenant") or ""
        store = self.stored(cls, tenant)
        if m == "HEAD":
            return (204 if oid in store else 404), None
        if oid not in store:
            if m == "PUT":  # live Weaviate 1.35: a replace of a missing object is a 500
                return 500, {"error": [{"message": f"no object with id '{oid}'"}]}
            return 404, None
        if m == "PUT":
            new = self._from_rest(c.body)
            new.created_ms = store[oid].created_ms  # Weaviate keeps the creation time
            store[oid] = new
            return 200, c.body
        if m == "PATCH":
            store[oid].properties.update(c.body.get("properties") or {})
            return 204, None
        if m == "DELETE":
            del store[oid]
            return 204, None
        return 405, None

    # -- gRPC semantics ------------------------------------------------------------------------
    def search(self, req: search_get_pb2.SearchRequest) -> search_get_pb2.SearchReply:
        with self._lock:
            self.grpc_calls.append(("Search", req))
            if self._scripted:
                rows = [(StoredObject(**_stored_kwargs(d)), d) for d in self._scripted.pop(0)]
            else:
                rows = [(o, {}) for o in self._answer(req)]
        results = [self._result(req, obj, extra) for obj, extra in rows]
        return search_get_pb2.SearchReply(results=results, took=0.001)

    def _answer(self, req: search_get_pb2.SearchRequest) -> list[StoredObject]:
        objs = list(self.stored(req.collection, req.tenant).values())
        if req.HasField("filters"):
            objs = [o for o in objs if _matches(req.filters, o)]
        if req.HasField("near_vector"):
            nv = req.near_vector
            query = query_vector(nv)
            scored = [(1 - _cos(query, o, nv.targets), o) for o in objs]
            scored.sort(key=lambda t: t[0])
            objs = [o for _, o in scored]
            self._last_distance = {o.id: d for d, o in scored}
        elif req.HasField("hybrid_search"):
            objs = self._hybrid(req.hybrid_search, objs)
        elif req.HasField("bm25_search"):
            objs = self._bm25(req.bm25_search, objs)
        else:  # a plain fetch: uuid order, which the cursor (``after``) relies on
            objs = sorted((o for o in objs if o.id > req.after), key=lambda o: o.id)
        limit = req.limit or 10
        return objs[:limit]

    def _bm25(self, b: Any, objs: list[StoredObject]) -> list[StoredObject]:
        words = set(re.findall(r"[a-z0-9]+", b.query.lower()))
        scores = {}
        for o in objs:
            text = " ".join(str(o.properties.get(p, "")) for p in b.properties or ["keywords"])
            overlap = len(words & set(re.findall(r"[a-z0-9]+", text.lower())))
            if overlap:
                scores[o.id] = float(overlap)
        self._last_score = scores
        return sorted((o for o in objs if o.id in scores), key=lambda o: -scores[o.id])

    def _hybrid(self, h: Any, objs: list[StoredObject]) -> list[StoredObject]:
        query = query_vector(h)
        words = set(re.findall(r"[a-z0-9]+", h.query.lower()))
        scores = {}
        for o in objs:
            text = " ".join(str(o.properties.get(p, "")) for p in h.properties or ["keywords"])
            overlap = len(words & set(re.findall(r"[a-z0-9]+", text.lower())))
            keyword = overlap / len(words) if words else 0.0
            vector = _cos(query, o, h.targets) if query else 0.0
            if h.alpha == 0 and overlap == 0:
                continue
            scores[o.id] = h.alpha * vector + (1 - h.alpha) * keyword
        self._last_score = scores
        return sorted((o for o in objs if o.id in scores), key=lambda o: -scores[o.id])

    def _result(
        self, req: search_get_pb2.SearchRequest, obj: StoredObject, extra: dict[str, Any]
    ) -> search_get_pb2.SearchResult:
        meta = search_get_pb2.MetadataResult(id=obj.id, id_as_bytes=uuid_lib.UUID(obj.id).bytes)
        if req.metadata.creation_time_unix:
            meta.creation_time_unix = obj.created_ms
            meta.creation_time_unix_present = True
        if req.metadata.last_update_time_unix:
            meta.last_update_time_unix = obj.created_ms
            meta.last_update_time_unix_present = True
        if req.metadata.score:
            meta.score = extra.get("score", self._last_score.get(obj.id, 0.0))
            meta.score_present = True
        if req.metadata.distance:
            meta.distance = extra.get("distance", self._last_distance.get(obj.id, 0.0))
            meta.distance_present = True
        for name in req.metadata.vectors:
            if name in obj.vectors:
                meta.vectors.append(
                    base_pb2.Vectors(
                        name=name,
                        vector_bytes=pack_floats(obj.vectors[name]),
                        type=base_pb2.Vectors.VECTOR_TYPE_SINGLE_FP32,
                    )
                )
        props = properties_pb2.Properties(fields={k: _value(v) for k, v in obj.properties.items()})
        return search_get_pb2.SearchResult(
            metadata=meta, properties=search_get_pb2.PropertiesResult(non_ref_props=props)
        )

    def batch(self, req: batch_pb2.BatchObjectsRequest) -> batch_pb2.BatchObjectsReply:
        errors = []
        with self._lock:
            self.grpc_calls.append(("BatchObjects", req))
            for index, obj in enumerate(req.objects):
                if obj.uuid in self.batch_rejections:
                    errors.append(
                        batch_pb2.BatchObjectsReply.BatchError(
                            index=index, error=self.batch_rejections[obj.uuid]
                        )
                    )
                    continue
                store = self.stored(obj.collection, obj.tenant)
                stored = batch_object_to_stored(obj)
                old = store.get(obj.uuid)
                stored.created_ms = old.created_ms if old else int(time.time() * 1000)
                store[obj.uuid] = stored
        return batch_pb2.BatchObjectsReply(errors=errors, took=0.001)

    def aggregate(self, req: aggregate_pb2.AggregateRequest) -> aggregate_pb2.AggregateReply:
        with self._lock:
            self.grpc_calls.append(("Aggregate", req))
            objs = list(self.stored(req.collection, req.tenant).values())
            if req.HasField("filters"):
                objs = [o for o in objs if _matches(req.filters, o)]
        return aggregate_pb2.AggregateReply(
            single_result=aggregate_pb2.AggregateReply.Single(objects_count=len(objs))
        )

    def tenants_get(self, req: tenants_pb2.TenantsGetRequest) -> tenants_pb2.TenantsGetReply:
        with self._lock:
            self.grpc_calls.append(("TenantsGet", req))
            names = sorted(self.tenants.get(req.collection, set()))
        return tenants_pb2.TenantsGetReply(
            tenants=[
                tenants_pb2.Tenant(name=n, activity_status=tenants_pb2.TENANT_ACTIVITY_STATUS_HOT)
                for n in names
            ]
        )


_HNSW_DEFAULTS = {
    "cleanupIntervalSeconds": 300,
    "distance": "cosine",
    "dynamicEfMin": 100,
    "dynamicEfMax": 500,
    "dynamicEfFactor": 8,
    "ef": -1,
    "efConstruction": 128,
    "flatSearchCutoff": 40000,
    "maxConnections": 32,
    "skip": False,
    "vectorCacheMaxObjects": 1000000000000,
}
_FLAT_DEFAULTS = {"distance": "cosine", "vectorCacheMaxObjects": 1000000000000}


def with_server_defaults(body: dict[str, Any]) -> dict[str, Any]:
    """The class as a server stores and returns it: the request plus the server's defaults
    (the client's config parser expects them all)."""
    cls = json.loads(json.dumps(body))
    cls.setdefault(
        "invertedIndexConfig",
        {
            "bm25": {"b": 0.75, "k1": 1.2},
            "cleanupIntervalSeconds": 60,
            "stopwords": {"preset": "en", "additions": None, "removals": None},
        },
    )
    cls.setdefault("multiTenancyConfig", {"enabled": False})
    if "vectorConfig" not in cls:
        cls.setdefault("vectorizer", "none")
    cls["replicationConfig"] = {"factor": 1, **cls.get("replicationConfig", {})}
    cls.setdefault(
        "shardingConfig",
        {
            "virtualPerPhysical": 128,
            "desiredCount": 1,
            "actualCount": 1,
            "desiredVirtualCount": 128,
            "actualVirtualCount": 128,
            "key": "_id",
            "strategy": "hash",
            "function": "murmur3",
        },
    )
    for prop in cls.get("properties") or []:
        is_text = prop["dataType"][0] in ("text", "text[]")
        prop.setdefault("indexFilterable", True)
        prop.setdefault("indexSearchable", is_text)
        prop.setdefault("indexRangeFilters", False)
        prop.setdefault("tokenization", "word" if is_text else None)
    for vector in (cls.get("vectorConfig") or {}).values():
        kind = vector.setdefault("vectorIndexType", "hnsw")
        given = vector.get("vectorIndexConfig") or {}
        if kind == "flat":
            vector["vectorIndexConfig"] = {**_FLAT_DEFAULTS, **given}
        elif kind == "dynamic":
            vector["vectorIndexConfig"] = {
                "distance": given.get("distance", "cosine"),
                "threshold": 10000,
                "hnsw": {**_HNSW_DEFAULTS, **(given.get("hnsw") or {})},
                "flat": {**_FLAT_DEFAULTS, **(given.get("flat") or {})},
            }
        else:
            vector["vectorIndexConfig"] = {**_HNSW_DEFAULTS, **given}
    return cls


def _stored_kwargs(d: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(d["id"]),
        "properties": d.get("properties", {}),
        "vectors": d.get("vectors", {}),
        "created_ms": d.get("created_ms", 0),
    }


def _cos(query: list[float], obj: StoredObject, targets: Any) -> float:
    names = _target_names(targets) or ["doc"]
    weights = _weights(targets) or {n: 1.0 / len(names) for n in names}
    q = np.asarray(query, dtype=np.float64)
    total = 0.0
    for name in names:
        vec = np.asarray(obj.vectors.get(name) or np.zeros_like(q), dtype=np.float64)
        norm = float(np.linalg.norm(q) * np.linalg.norm(vec)) or 1.0
        total += weights.get(name, 0.0) * float(q @ vec) / norm
    return total


def _prop(f: base_pb2.Filters) -> str:
    if f.HasField("target"):
        return f.target.property
    return f.on[0] if f.on else ""


def _matches(f: base_pb2.Filters, obj: StoredObject) -> bool:
    op = f.operator
    if op == _Op.OPERATOR_AND:
        return all(_matches(sub, obj) for sub in f.filters)
    if op == _Op.OPERATOR_OR:
        return any(_matches(sub, obj) for sub in f.filters)
    if op == _Op.OPERATOR_NOT:
        return not _matches(f.filters[0], obj)
    name = _prop(f)
    have = obj.id if name == "_id" else obj.properties.get(name)
    have_set = set(have) if isinstance(have, list) else {have}
    if op == _Op.OPERATOR_EQUAL:
        return f.value_text in have_set
    if op == _Op.OPERATOR_NOT_EQUAL:
        return f.value_text not in have_set
    if op == _Op.OPERATOR_CONTAINS_ANY:
        return bool(have_set & set(f.value_text_array.values))
    if op == _Op.OPERATOR_CONTAINS_ALL:
        return set(f.value_text_array.values) <= have_set
    raise NotImplementedError(f"fake Weaviate has no filter operator {op}")


class _Servicer(weaviate_pb2_grpc.WeaviateServicer):
    def __init__(self, fake: FakeWeaviate) -> None:
        self.fake = fake

    def Search(self, request, context):  # noqa: N802 - gRPC method names
        return self.fake.search(request)

    def BatchObjects(self, request, context):  # noqa: N802
        return self.fake.batch(request)

    def Aggregate(self, request, context):  # noqa: N802
        return self.fake.aggregate(request)

    def TenantsGet(self, request, context):  # noqa: N802
        return self.fake.tenants_get(request)


class _Health(health_pb2_grpc.HealthServicer):
    def Check(self, request, context):  # noqa: N802
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


class TinyEmbedder:
    """A deterministic 8-d embedder for wire tests: they check what is sent and how replies
    are read, not ranking, so the real model (and its load time) adds nothing there."""

    name = "test/tiny-hash-8"
    dim = 8

    def _vector(self, text: str) -> np.ndarray:
        digest = np.frombuffer(hashlib.sha256(text.encode()).digest()[:8], dtype=np.uint8)
        vec = digest.astype(np.float32) + 1.0
        return vec / np.linalg.norm(vec)

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._vector("passage: " + t) for t in texts])

    def embed_query(self, text: str) -> np.ndarray:
        return self._vector("query: " + text)
