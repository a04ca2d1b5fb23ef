"""The rule for versions of one name added at the same moment (docs/weaviate.md, section 5):
:func:`settle_versions`, which the Weaviate library applies after every write."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dynagraph.tools.library.base import FunctionRecord


def settle_versions(
    records: list[FunctionRecord], update: Callable[[str, dict[str, Any]], None]
) -> list[FunctionRecord]:
    """Renumber ``records`` (every record of one name) 1..n unless they are already (a lone
    record keeps the version it was stored with).

    Machines sharing a library admit without a common lock, so two of them can both read
    "newest is v1" and both store a v2 (different code, so different ids: nothing is lost,
    but the numbering repeats). After every write of a record the writer reads the
    name's records and, when there are several and they are not numbered 1..n, renumbers them in the
    order (version claimed, created_at, id), so no number repeats and none is skipped (a
    writer with a stale view can claim a number twice, or re-send a record with a version
    another writer already renumbered, which would leave a gap); a renumbered record supersedes
    the one just before it; of the records that are active only the newest stays active
    (the others are archived, kept and restorable). Every writer computes the same result
    from the same records, and the last writer to insert sees every record, so concurrent
    settles converge. ``update(record_id, properties)`` writes a change (the records are
    updated in place too). Returns the records, in order.
    """
    ordered = sorted(records, key=lambda r: (r.version, r.created_at, r.id))
    versions = list(range(1, len(ordered) + 1))
    if len(ordered) < 2 or [r.version for r in ordered] == versions:
        return ordered
    by_id = {r.id: r for r in ordered}
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
                f"superseded by v{versions[-1]} (versions of {record.name} added at the same "
                "moment, settled by (version, created_at, id))"
            )
        if props:
            update(record.id, props)
            for key, value in props.items():
                setattr(record, key, (value or None) if key == "supersedes" else value)
    return ordered
