"""The library's decision log and pruning: what the librarian did, and archiving what no task
uses any more."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dynagraph.tools.librarian.candidate import Origin
from dynagraph.tools.librarian.context import Decision
from dynagraph.tools.library import FunctionLibrary, FunctionRecord, utc_now

__all__ = ["PRUNED_PREFIX", "log_entries", "prune"]

#: Reason prefix of functions archived by pruning (an exact duplicate restores them).
PRUNED_PREFIX = "pruned:"


def log_entries(
    decisions: Iterable[Decision], origin: Origin, task_index: int | None = None
) -> list[dict[str, Any]]:
    """Decisions as the library's log stores them: with when, which task and which thread."""
    at = utc_now()
    return [
        {
            **d.to_dict(),
            "at": at,
            "task_index": task_index,
            "thread": origin.thread,
            "task": origin.task[:200],
        }
        for d in decisions
    ]


def prune(
    library: FunctionLibrary, unused_tasks: int, *, dry_run: bool = False
) -> tuple[int, list[FunctionRecord]]:
    """Archive (never delete) active functions not used in the last ``unused_tasks`` tasks.

    A function's last use is the last task that called it, a duplicate of it, or admitted it
    (``last_used_task``). Returns the library's task count and the functions archived (or, with
    ``dry_run``, that would be). Archived functions are restored with ``library restore``.
    """
    now = library.task_index()
    stale = [r for r in library.list(status="active") if now - r.last_used_task >= unused_tasks]
    if not dry_run:
        entries = []
        for record in stale:
            reason = (
                f"{PRUNED_PREFIX} not used in the last {unused_tasks} tasks "
                f"(last used in task {record.last_used_task}, now {now})"
            )
            library.set_status(record.id, "archived", reason)
            entries.append(Decision(record.name, "archived", record.id, reason, "prune"))
        library.log_decisions(log_entries(entries, Origin(thread="prune"), now))
    return now, stale
