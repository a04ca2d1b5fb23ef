"""The process tree, read from /proc: which processes a test's agent left running."""

from __future__ import annotations

from pathlib import Path


def process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, state) for every process we can see."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), fields[0])
    return table


def descendants(root: int) -> set[int]:
    """Every process below `root`: its children, theirs, ..."""
    table = process_table()
    found, frontier = set(), [root]
    while frontier:
        parent = frontier.pop()
        children = {pid for pid, (ppid, _) in table.items() if ppid == parent}
        frontier.extend(children - found)
        found |= children
    return found


def running(pids: set[int]) -> set[int]:
    """The pids still running: neither gone nor zombies waiting for a reaper."""
    table = process_table()
    return {pid for pid in pids if pid in table and table[pid][1] != "Z"}
