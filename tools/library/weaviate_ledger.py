"""The librarian's journal kept in Weaviate itself, so every machine sharing a library sees one.

Two small collections next to the function collection ``<C>`` (same tenant when it has one),
created on first use:

- ``<C>Log``: the decision log, one object per decision (``name``, ``action``, ``target``, the
  whole entry as JSON, ``at``: UTC time with microseconds, ``machine``). Read newest first by
  ``at`` and shown oldest first, as the SQLite log is.
- ``<C>Task``: one object per finished task (``at``, ``machine``). The task index of the protocol
  is the task's rank by time among every machine's tasks; ``task_index()`` is their count. So
  ``library prune --unused-tasks N`` ("unused in the last N tasks", with ``last_used_task``
  stamped from this index) means the same on every machine.

Weaviate has no atomic increment and no transaction, so nothing here counts by read-modify-write:
every write is an insert of a new object whose uuid the writer chose before the first try (kept
in the outbox when the server is down), and a repeated write of the same uuid is a no-op. Two
tasks finishing within the same microsecond tie on their index; pruning does not care.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable
from typing import Any

from dynagraph.tools.library.ledger import decision_rows, new_ids, now_us
from dynagraph.tools.library.weaviate_schema import (
    create_once,
    multi_tenancy,
    tenant_view,
    text_property,
)
from weaviate.classes.config import Configure
from weaviate.classes.data import DataObject
from weaviate.classes.query import Filter, Sort
from weaviate.exceptions import UnexpectedStatusCodeError

#: The name this installation writes into ``machine`` (who decided; for people reading the log).
MACHINE = os.environ.get("DYNAGRAPH_MACHINE") or socket.gethostname()


_LOG_PROPERTIES = [
    text_property("name", filterable=True),
    text_property("action", filterable=True),
    text_property("target", filterable=True),
    text_property("at", filterable=True),
    text_property("machine", filterable=True),
    # the task thread that decided: a resumed task skips what it decided
    text_property("thread", filterable=True),
    text_property("entry"),
]
_TASK_PROPERTIES = [text_property("at", filterable=True), text_property("machine", filterable=True)]


class WeaviateLedger:
    """Decision log and task counter in ``<collection>Log`` / ``<collection>Task``.

    ``client`` is the library's connected client; ``errors`` its error-translating context
    manager factory (so an outage is a ``LibraryUnavailableError`` that the outbox queues).
    """

    def __init__(
        self,
        client: Any,
        collection: str,
        *,
        tenant: str | None,
        replication_factor: int,
        errors: Any,
    ) -> None:
        self._client = client
        self._names = {"log": f"{collection}Log", "task": f"{collection}Task"}
        self._tenant = tenant
        self._replication = replication_factor
        self._errors = errors
        self._opened: dict[str, Any] = {}

    def _collection(self, kind: str) -> Any:
        if kind in self._opened:
            return self._opened[kind]
        name = self._names[kind]
        with self._errors(f"open the {name} collection"):
            create_once(
                self._client,
                name,
                description=f"dynagraph library journal ({kind})",
                properties=_LOG_PROPERTIES if kind == "log" else _TASK_PROPERTIES,
                replication_config=Configure.replication(factor=self._replication),
                multi_tenancy_config=multi_tenancy(self._tenant),
            )
            collection = tenant_view(self._client.collections.use(name), self._tenant)
        self._opened[kind] = collection
        return collection

    def _insert_once(self, kind: str, objects: list[DataObject], action: str) -> None:
        """Insert objects whose uuids the caller chose; an object already there is kept (the
        same write sent twice, e.g. replayed from the outbox after a lost acknowledgement)."""
        collection = self._collection(kind)
        with self._errors(action):
            for obj in objects:
                try:
                    collection.data.insert(properties=obj.properties, uuid=obj.uuid, vector=None)
                except UnexpectedStatusCodeError as exc:
                    if exc.status_code != 422 or "already exists" not in str(exc):
                        raise

    # -- the task counter -------------------------------------------------------------------------
    def count_task(self, *, at: str | None = None, task_id: str | None = None) -> int:
        """Record one finished task; its index: its rank by time among every machine's tasks."""
        at = at or now_us()
        task_id = task_id or new_ids(1)[0]
        props = {"at": at, "machine": MACHINE}
        self._insert_once("task", [DataObject(properties=props, uuid=task_id)], "count a task")
        collection = self._collection("task")
        with self._errors("count tasks", grpc=True):
            reply = collection.aggregate.over_all(
                filters=Filter.by_property("at").less_or_equal(at), total_count=True
            )
        return int(reply.total_count or 0)

    def task_index(self) -> int:
        collection = self._collection("task")
        with self._errors("count tasks", grpc=True):
            return int(collection.aggregate.over_all(total_count=True).total_count or 0)

    # -- the decision log -------------------------------------------------------------------------
    def log_decisions(
        self,
        entries: Iterable[dict[str, Any]],
        *,
        at: str | None = None,
        ids: list[str] | None = None,
    ) -> None:
        rows = decision_rows(entries)  # validated before anything is written
        if not rows:
            return
        at = at or now_us()
        ids = ids or new_ids(len(rows))
        objects = []
        for index, ((name, action, target, entry), object_id) in enumerate(
            zip(rows, ids, strict=True)
        ):
            props = {
                "name": name,
                "action": action,
                "target": target or "",
                # one batch shares a time; the index keeps its order
                "at": f"{at}#{index:04d}",
                "machine": MACHINE,
                "thread": str(json.loads(entry).get("thread") or ""),
                "entry": entry,
            }
            objects.append(DataObject(properties=props, uuid=object_id))
        self._insert_once("log", objects, "log decisions")

    def thread_decisions(self, thread: str) -> list[dict[str, Any]]:
        """Every decision ``thread`` logged, oldest first."""
        collection = self._collection("log")
        with self._errors("read the decision log", grpc=True):
            objects = collection.query.fetch_objects(
                filters=Filter.by_property("thread").equal(thread),
                limit=10_000,  # one task decides about a handful of functions
                return_properties=["entry", "at"],
            ).objects
        objects.sort(key=lambda o: (str(o.properties["at"]), str(o.uuid)))
        return [json.loads(str(o.properties["entry"])) for o in objects]

    def decision_log(self, *, limit: int = 100, name: str | None = None) -> list[dict[str, Any]]:
        if limit <= 0:
            return []
        filters = None
        if name is not None:
            filters = Filter.by_property("name").equal(name) | Filter.by_property("target").equal(
                name
            )
        collection = self._collection("log")
        with self._errors("read the decision log", grpc=True):
            reply = collection.query.fetch_objects(
                filters=filters,
                limit=int(limit),
                sort=Sort.by_property("at", ascending=False),
                return_properties=["entry", "at"],
            )
        objects = sorted(reply.objects, key=lambda o: (str(o.properties["at"]), str(o.uuid)))
        return [json.loads(str(o.properties["entry"])) for o in objects]
