"""Lifting a quarantine: ``dynagraph library restore NAME``.

A quarantined version blocks its name (tools/librarian/policy.py), so restoring a name must
leave no quarantined version of it behind: the version the name resolves to becomes active and
the other quarantined versions are archived (kept, never retrieved), with the reason.
"""

from __future__ import annotations

from dynagraph.tools.librarian.context import Decision
from dynagraph.tools.library import FunctionLibrary, FunctionRecord

__all__ = ["restore"]


def restore(library: FunctionLibrary, name: str, reason: str = "") -> list[Decision] | None:
    """Make ``name`` (a name, alias or id) active again; None when there is no such function.
    Returns the decisions made: the restored version first, then the versions archived."""
    record: FunctionRecord | None = library.get_by_name(name, include_inactive=True)
    record = record or library.get(name)
    if record is None:
        return None
    library.set_status(record.id, "active", reason)
    decisions = [Decision(record.name, "active", record.id, reason or "restored by hand", "cli")]
    for other in library.versions(record.name):
        if other.id == record.id or other.status != "quarantined":
            continue
        why = (
            f"quarantine lifted by `library restore {name}` (v{record.version} restored); "
            f"was quarantined: {other.status_reason}"
        )
        library.set_status(other.id, "archived", why)
        decisions.append(Decision(other.name, "archived", other.id, why, "cli"))
    return decisions
