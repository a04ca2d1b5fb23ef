"""Processes as Linux's /proc shows them: a process is known by its pid *and* its start time,
so a pid the system reused for another process is never taken for the one that had it."""

from __future__ import annotations

from pathlib import Path

__all__ = ["start_time", "stat_fields"]


def stat_fields(pid: int | str) -> list[str] | None:
    """/proc/<pid>/stat from field 3 on (state, parent pid, ...; the command name before it may
    hold spaces and parentheses), or None if there is no such process (or no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields if len(fields) > 19 else None


def start_time(pid: int | str) -> str | None:
    """The process's start time (clock ticks after boot, field 22), or None if it is gone."""
    fields = stat_fields(pid)
    return fields[19] if fields is not None else None
