"""What an unsandboxed kernel's cells started in the background: found before the kernel stops,
killed after it.

Why: shutting a kernel down kills its process group, which a plain ``subprocess.Popen`` child
shares, but a cell's ``Popen(..., start_new_session=True)`` or a double-forked daemon left it, and
outlived the task and the agent (an attack found them re-parented to init). Under bubblewrap the
sandbox's PID namespace ends them all with its init; without it, the kernel process is made a
child subreaper (kernel_side/launcher.py), so a daemon whose parent exits stays below the kernel,
where :func:`process_tree` finds it while the kernel runs; :func:`kill_tree` ends what is still
running of it once the kernel is gone. Each process is known by its pid *and* start time, so a
pid the system reused meanwhile is never signalled. Linux only (/proc); elsewhere nothing is
found and nothing is killed.
"""

from __future__ import annotations

import contextlib
import os
import signal

from dynagraph.tools.procfs import stat_fields

__all__ = ["kill_tree", "process_tree"]


def process_tree(root: int | None) -> dict[int, str]:
    """{pid: start time} of every process below ``root`` (not ``root`` itself)."""
    if not root:
        return {}
    parents: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return {}
    for entry in entries:
        fields = stat_fields(entry)
        if fields is None or fields[0] == "Z":
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry))
        starts[int(entry)] = fields[19]
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        for child in parents.get(frontier.pop(), []):
            if child not in found and child in starts:
                found[child] = starts[child]
                frontier.append(child)
    return found


def kill_tree(tree: dict[int, str]) -> None:
    """SIGKILL each process of ``tree`` that still runs with the same start time."""
    for pid, start in tree.items():
        fields = stat_fields(pid)
        if fields is not None and fields[19] == start and fields[0] != "Z":
            with contextlib.suppress(OSError):  # it ended meanwhile
                os.kill(pid, signal.SIGKILL)
